/* Host driver of the generated front end (keras_dssdn.deploy.host_check; not part of a bundle).
 *
 *   frontend_host PCM_FILE CLIP_SAMPLES OUT_FILE [pad]
 *
 * PCM_FILE: clips of CLIP_SAMPLES int16 samples each (native byte order), one after the other.
 * Each clip is streamed through dssdn_frontend as a device would: pushed in chunks of uneven sizes,
 * a new segment started whenever one is complete. Writes every segment's int8 tensor
 * (DSSDN_FE_INPUT_ELEMENTS bytes) to OUT_FILE. A remainder shorter than a segment is dropped, as the
 * training pipeline does, or with "pad" completed by dssdn_fe_flush. Exit status 0 on success.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dssdn_frontend.h"

static const int32_t kChunks[] = {1, 7, 160, 1023, 4096, 3, 512};

static int stream_clip(dssdn_frontend* fe, const int16_t* pcm, int32_t n, int pad, int8_t* tensor, FILE* out) {
  int32_t pos = 0, chunk = 0, usable = n - n % DSSDN_FE_SEGMENT_SAMPLES;
  if (pad) usable = n;
  dssdn_fe_start(fe, tensor);
  while (pos < usable) {
    int32_t want = kChunks[chunk++ % (int32_t)(sizeof(kChunks) / sizeof(kChunks[0]))];
    if (want > usable - pos) want = usable - pos;
    pos += dssdn_fe_push(fe, pcm + pos, want);
    if (dssdn_fe_done(fe)) {
      if (fwrite(tensor, 1, DSSDN_FE_INPUT_ELEMENTS, out) != DSSDN_FE_INPUT_ELEMENTS) return 1;
      dssdn_fe_start(fe, tensor);
    }
  }
  if (fe->received > 0) { /* a partial last segment (pad only) */
    dssdn_fe_flush(fe);
    if (!dssdn_fe_done(fe)) return 2;
    if (fwrite(tensor, 1, DSSDN_FE_INPUT_ELEMENTS, out) != DSSDN_FE_INPUT_ELEMENTS) return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  static dssdn_frontend fe;
  static int8_t tensor[DSSDN_FE_INPUT_ELEMENTS];
  FILE *in, *out;
  int16_t* pcm;
  int32_t clip_samples;
  int pad, status = 0;
  if (argc < 4) {
    fprintf(stderr, "usage: %s PCM_FILE CLIP_SAMPLES OUT_FILE [pad]\n", argv[0]);
    return 64;
  }
  clip_samples = (int32_t)atol(argv[2]);
  pad = argc > 4 && strcmp(argv[4], "pad") == 0;
  pcm = (int16_t*)malloc(sizeof(int16_t) * (size_t)clip_samples);
  in = fopen(argv[1], "rb");
  out = fopen(argv[3], "wb");
  if (!pcm || !in || !out || clip_samples <= 0) {
    fprintf(stderr, "frontend_host: cannot open the files or allocate %ld samples\n", (long)clip_samples);
    return 65;
  }
  while (status == 0 && fread(pcm, sizeof(int16_t), (size_t)clip_samples, in) == (size_t)clip_samples)
    status = stream_clip(&fe, pcm, clip_samples, pad, tensor, out);
  free(pcm);
  fclose(in);
  if (fclose(out) != 0) status = 1;
  if (status) fprintf(stderr, "frontend_host: failed (status %d)\n", status);
  return status;
}
