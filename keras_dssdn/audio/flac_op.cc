// FLAC decoder as a TensorFlow op (keras_dssdn). Self-contained: no libFLAC.
// Decodes 4..24-bit FLAC to float32 [frames, channels] scaled by 2^(bps-1).
// Every read is bounds-checked; corrupt input gives InvalidArgument naming `name`.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

struct BitReader {
  const uint8_t* data;
  size_t nbytes;
  uint64_t nbits;
  uint64_t pos = 0;
  bool ok = true;

  BitReader(const uint8_t* d, size_t n) : data(d), nbytes(n), nbits(uint64_t(n) * 8) {}

  // 64 bits starting at pos (at least 57 valid), zeros past the end.
  inline uint64_t window() const {
    size_t b = size_t(pos >> 3);
    uint64_t w = 0;
    if (b + 8 <= nbytes) {
      std::memcpy(&w, data + b, 8);
      w = __builtin_bswap64(w);
    } else {
      for (int i = 0; i < 8; ++i) w = (w << 8) | (b + i < nbytes ? data[b + i] : 0);
    }
    return w << (pos & 7);
  }
  inline uint32_t read(int k) {  // 0 <= k <= 32
    if (k == 0) return 0;
    if (pos + uint64_t(k) > nbits) { ok = false; pos = nbits; return 0; }
    uint32_t v = uint32_t(window() >> (64 - k));
    pos += k;
    return v;
  }
  inline int32_t read_signed(int k) {  // 1 <= k <= 32
    if (k == 0) return 0;
    uint32_t v = read(k);
    if (k < 32 && (v >> (k - 1)) & 1) v |= ~((uint32_t(1) << k) - 1);
    return int32_t(v);
  }
  inline uint64_t read_unary() {  // number of 0 bits before the next 1
    uint64_t q = 0;
    for (;;) {
      if (pos >= nbits) { ok = false; return 0; }
      uint64_t w = window();
      uint64_t avail = nbits - pos < 57 ? nbits - pos : 57;
      if (w != 0) {
        uint64_t z = uint64_t(__builtin_clzll(w));
        if (z < avail) { q += z; pos += z + 1; return q; }
      }
      q += avail;
      pos += avail;
      if (q > (uint64_t(1) << 32)) { ok = false; return 0; }
    }
  }
  inline void align() { pos = (pos + 7) & ~uint64_t(7); }
};

uint8_t crc8(const uint8_t* d, size_t n) {
  uint8_t crc = 0;
  for (size_t i = 0; i < n; ++i) {
    crc ^= d[i];
    for (int j = 0; j < 8; ++j) crc = (crc & 0x80) ? uint8_t((crc << 1) ^ 0x07) : uint8_t(crc << 1);
  }
  return crc;
}

struct Crc16Table {
  uint16_t t[256];
  Crc16Table() {
    for (int i = 0; i < 256; ++i) {
      uint16_t c = uint16_t(i << 8);
      for (int j = 0; j < 8; ++j) c = (c & 0x8000) ? uint16_t((c << 1) ^ 0x8005) : uint16_t(c << 1);
      t[i] = c;
    }
  }
};
const Crc16Table kCrc16;

uint16_t crc16(const uint8_t* d, size_t n) {
  uint16_t crc = 0;
  for (size_t i = 0; i < n; ++i) crc = uint16_t((crc << 8) ^ kCrc16.t[(crc >> 8) ^ d[i]]);
  return crc;
}

struct StreamInfo {
  uint32_t rate = 0, channels = 0, bps = 0, max_block = 0;
  uint64_t total = 0;
  size_t audio_start = 0;
};

// Returns "" on success, else a description of the problem.
std::string parse_header(const uint8_t* d, size_t n, StreamInfo* si) {
  size_t p = 0;
  if (n >= 10 && d[0] == 'I' && d[1] == 'D' && d[2] == '3') {
    p = 10 + ((size_t(d[6] & 0x7f) << 21) | (size_t(d[7] & 0x7f) << 14) | (size_t(d[8] & 0x7f) << 7) | size_t(d[9] & 0x7f));
  }
  if (p + 4 > n || std::memcmp(d + p, "fLaC", 4) != 0) return "not a FLAC stream (no fLaC marker)";
  p += 4;
  bool last = false, have_info = false;
  while (!last) {
    if (p + 4 > n) return "metadata is truncated";
    last = (d[p] & 0x80) != 0;
    int type = d[p] & 0x7f;
    size_t len = (size_t(d[p + 1]) << 16) | (size_t(d[p + 2]) << 8) | d[p + 3];
    p += 4;
    if (p + len > n) return "metadata is truncated";
    if (type == 0) {
      if (len != 34) return "bad STREAMINFO block";
      const uint8_t* s = d + p;
      si->max_block = (uint32_t(s[2]) << 8) | s[3];
      uint64_t packed = 0;
      for (int i = 10; i < 18; ++i) packed = (packed << 8) | s[i];
      si->rate = uint32_t(packed >> 44);
      si->channels = uint32_t((packed >> 41) & 7) + 1;
      si->bps = uint32_t((packed >> 36) & 31) + 1;
      si->total = packed & ((uint64_t(1) << 36) - 1);
      have_info = true;
    } else if (!have_info) {
      return "STREAMINFO is not the first metadata block";
    }
    p += len;
  }
  if (!have_info) return "no STREAMINFO block";
  if (si->bps < 4 || si->bps > 24) return "unsupported bits per sample " + std::to_string(si->bps) + " (4..24 supported)";
  si->audio_start = p;
  return "";
}

struct FrameHeader {
  uint32_t block = 0, channels = 0, assignment = 0, bps = 0;
  size_t length = 0;  // bytes, CRC-8 included
};

std::string parse_frame_header(const uint8_t* d, size_t n, const StreamInfo& si, FrameHeader* fh) {
  if (n < 6 || d[0] != 0xFF || (d[1] & 0xFE) != 0xF8) return "lost frame sync";
  uint32_t bs_code = d[2] >> 4, sr_code = d[2] & 15, ch = d[3] >> 4, ss = (d[3] >> 1) & 7;
  if (bs_code == 0 || sr_code == 15 || ch > 10 || ss == 3 || (d[3] & 1)) return "reserved value in frame header";
  size_t p = 4;
  uint8_t first = d[p];
  int extra;
  if (first < 0x80) extra = 0;
  else if ((first & 0xE0) == 0xC0) extra = 1;
  else if ((first & 0xF0) == 0xE0) extra = 2;
  else if ((first & 0xF8) == 0xF0) extra = 3;
  else if ((first & 0xFC) == 0xF8) extra = 4;
  else if ((first & 0xFE) == 0xFC) extra = 5;
  else if (first == 0xFE) extra = 6;
  else return "bad coded frame number";
  p += 1 + extra;
  if (p > n) return "truncated frame header";
  for (int k = 1; k <= extra; ++k)
    if ((d[4 + k] & 0xC0) != 0x80) return "bad coded frame number";
  uint32_t block;
  if (bs_code == 1) block = 192;
  else if (bs_code <= 5) block = 576u << (bs_code - 2);
  else if (bs_code == 6) { if (p + 1 > n) return "truncated frame header"; block = uint32_t(d[p]) + 1; p += 1; }
  else if (bs_code == 7) { if (p + 2 > n) return "truncated frame header"; block = ((uint32_t(d[p]) << 8) | d[p + 1]) + 1; p += 2; }
  else block = 256u << (bs_code - 8);
  if (sr_code == 12) p += 1;
  else if (sr_code == 13 || sr_code == 14) p += 2;
  if (p + 1 > n) return "truncated frame header";
  if (crc8(d, p) != d[p]) return "frame header checksum mismatch";
  static const uint32_t kBps[8] = {0, 8, 12, 0, 16, 20, 24, 32};
  fh->bps = ss == 0 ? si.bps : kBps[ss];
  if (fh->bps != si.bps) return "frame bit depth differs from STREAMINFO";
  fh->block = block;
  fh->assignment = ch;
  fh->channels = ch < 8 ? ch + 1 : 2;
  fh->length = p + 1;
  return "";
}

std::string decode_residual(BitReader& br, uint32_t block, uint32_t order, int32_t* res) {
  uint32_t method = br.read(2);
  if (method > 1) return "reserved residual coding method";
  int param_bits = method == 0 ? 4 : 5;
  uint32_t escape = method == 0 ? 15 : 31;
  uint32_t porder = br.read(4);
  uint32_t parts = 1u << porder;
  if ((block >> porder) << porder != block || (block >> porder) < order) return "bad residual partition order";
  uint32_t i = 0;
  for (uint32_t part = 0; part < parts; ++part) {
    uint32_t count = (block >> porder) - (part == 0 ? order : 0);
    uint32_t k = br.read(param_bits);
    if (!br.ok) return "truncated residual";
    if (k == escape) {
      uint32_t nb = br.read(5);
      for (uint32_t j = 0; j < count; ++j) res[i++] = nb ? br.read_signed(int(nb)) : 0;
    } else {
      for (uint32_t j = 0; j < count; ++j) {
        uint64_t u;
        uint64_t w = br.window();
        // Fast path: quotient and k low bits both inside the 57-bit window.
        if (w != 0 && br.pos + 57 <= br.nbits) {
          uint32_t z = uint32_t(__builtin_clzll(w));
          if (z + 1 + k <= 57) {
            u = (uint64_t(z) << k) | (k ? ((w << (z + 1)) >> (64 - k)) : 0);
            br.pos += z + 1 + k;
            uint32_t u32 = uint32_t(u);
            res[i++] = int32_t((u32 >> 1) ^ (~(u32 & 1) + 1));
            continue;
          }
        }
        uint64_t q = br.read_unary();
        u = (q << k) | br.read(int(k));
        if (!br.ok || u > 0xFFFFFFFFull) return "bad residual";
        uint32_t u32 = uint32_t(u);
        res[i++] = int32_t((u32 >> 1) ^ (~(u32 & 1) + 1));
      }
    }
    if (!br.ok) return "truncated residual";
  }
  return "";
}

std::string decode_subframe(BitReader& br, uint32_t block, uint32_t bps, int32_t* out) {
  if (br.read(1) != 0) return "bad subframe padding bit";
  uint32_t type = br.read(6);
  uint32_t wasted = 0;
  if (br.read(1)) {
    wasted = uint32_t(br.read_unary()) + 1;
    if (wasted >= bps) return "bad wasted-bits count";
    bps -= wasted;
  }
  if (!br.ok) return "truncated subframe";
  if (type == 0) {  // CONSTANT
    int32_t v = br.read_signed(int(bps));
    for (uint32_t i = 0; i < block; ++i) out[i] = v;
  } else if (type == 1) {  // VERBATIM
    for (uint32_t i = 0; i < block; ++i) out[i] = br.read_signed(int(bps));
  } else if (type >= 8 && type <= 12) {  // FIXED
    uint32_t order = type - 8;
    if (order > block) return "predictor order exceeds block size";
    for (uint32_t i = 0; i < order; ++i) out[i] = br.read_signed(int(bps));
    std::string err = decode_residual(br, block, order, out + order);
    if (!err.empty()) return err;
    switch (order) {
      case 0: break;
      case 1: for (uint32_t i = 1; i < block; ++i) out[i] += out[i - 1]; break;
      case 2: for (uint32_t i = 2; i < block; ++i) out[i] += int32_t(2 * int64_t(out[i - 1]) - out[i - 2]); break;
      case 3: for (uint32_t i = 3; i < block; ++i) out[i] += int32_t(3 * int64_t(out[i - 1]) - 3 * int64_t(out[i - 2]) + out[i - 3]); break;
      case 4: for (uint32_t i = 4; i < block; ++i) out[i] += int32_t(4 * int64_t(out[i - 1]) - 6 * int64_t(out[i - 2]) + 4 * int64_t(out[i - 3]) - out[i - 4]); break;
    }
  } else if (type >= 32) {  // LPC
    uint32_t order = (type & 31) + 1;
    if (order > block) return "predictor order exceeds block size";
    for (uint32_t i = 0; i < order; ++i) out[i] = br.read_signed(int(bps));
    uint32_t precision = br.read(4) + 1;
    if (precision == 16) return "bad LPC precision";
    int32_t shift = br.read_signed(5);
    if (shift < 0) return "negative LPC shift";
    int32_t coef[32];
    for (uint32_t j = 0; j < order; ++j) coef[j] = br.read_signed(int(precision));
    if (!br.ok) return "truncated subframe";
    std::string err = decode_residual(br, block, order, out + order);
    if (!err.empty()) return err;
    for (uint32_t i = order; i < block; ++i) {
      int64_t sum = 0;
      for (uint32_t j = 0; j < order; ++j) sum += int64_t(coef[j]) * out[i - 1 - j];
      out[i] += int32_t(sum >> shift);
    }
  } else {
    return "reserved subframe type";
  }
  if (!br.ok) return "truncated subframe";
  if (wasted)
    for (uint32_t i = 0; i < block; ++i) out[i] = int32_t(uint32_t(out[i]) << wasted);
  return "";
}

class DecodeFlacOp : public OpKernel {
 public:
  explicit DecodeFlacOp(OpKernelConstruction* c) : OpKernel(c) {}

  void Compute(OpKernelContext* ctx) override {
    const tensorflow::tstring& contents = ctx->input(0).scalar<tensorflow::tstring>()();
    const std::string name(ctx->input(1).scalar<tensorflow::tstring>()());
    const std::string hint = ". Re-download or re-extract the file, or remove its row from the metadata.";
    const uint8_t* d = reinterpret_cast<const uint8_t*>(contents.data());
    size_t n = contents.size();
    StreamInfo si;
    std::string err = parse_header(d, n, &si);
    OP_REQUIRES(ctx, err.empty(), tensorflow::errors::InvalidArgument(name, ": corrupt FLAC file (", err, ")", hint));
    const uint32_t C = si.channels;
    const float scale = 1.0f / float(uint32_t(1) << (si.bps - 1));
    std::vector<float> grow;
    Tensor* out = nullptr;
    float* dst = nullptr;
    // Preallocate from the header only when its sample count is plausible for
    // the file size (a corrupt header must not trigger a huge allocation).
    const bool direct = si.total > 0 && si.total * C <= uint64_t(n) * 16 + (uint64_t(1) << 20);
    if (direct) {
      OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({int64_t(si.total), int64_t(C)}), &out));
      dst = out->flat<float>().data();
    }
    std::vector<int32_t> buf;
    uint64_t done = 0;
    size_t p = si.audio_start;
    while (p < n) {
      if (si.total > 0 && done == si.total) break;  // trailing tags / padding
      if (si.total == 0 && (n - p < 6 || d[p] != 0xFF)) break;
      FrameHeader fh;
      err = parse_frame_header(d + p, n - p, si, &fh);
      OP_REQUIRES(ctx, err.empty(), tensorflow::errors::InvalidArgument(
          name, ": corrupt or truncated FLAC file (", err, " at byte ", p, ", sample ", done, ")", hint));
      OP_REQUIRES(ctx, fh.channels == C, tensorflow::errors::InvalidArgument(
          name, ": corrupt FLAC file (frame at byte ", p, " has ", fh.channels, " channels, stream has ", C, ")", hint));
      buf.resize(size_t(fh.block) * C);
      BitReader br(d + p, n - p);
      br.pos = uint64_t(fh.length) * 8;
      for (uint32_t c = 0; c < C; ++c) {
        uint32_t bps = fh.bps;
        if ((fh.assignment == 8 && c == 1) || (fh.assignment == 9 && c == 0) || (fh.assignment == 10 && c == 1)) bps += 1;
        err = decode_subframe(br, fh.block, bps, buf.data() + size_t(c) * fh.block);
        OP_REQUIRES(ctx, err.empty(), tensorflow::errors::InvalidArgument(
            name, ": corrupt or truncated FLAC file (", err, " in frame at byte ", p, ")", hint));
      }
      br.align();
      uint64_t body = br.pos / 8;
      OP_REQUIRES(ctx, body + 2 <= n - p, tensorflow::errors::InvalidArgument(
          name, ": truncated FLAC file (last frame incomplete at byte ", p, ", sample ", done, ")", hint));
      uint16_t want = uint16_t((d[p + body] << 8) | d[p + body + 1]);
      OP_REQUIRES(ctx, crc16(d + p, size_t(body)) == want, tensorflow::errors::InvalidArgument(
          name, ": corrupt FLAC file (frame checksum mismatch at byte ", p, ", sample ", done, ")", hint));
      int32_t* ch0 = buf.data();
      int32_t* ch1 = C > 1 ? buf.data() + fh.block : nullptr;
      if (fh.assignment == 8) {  // left / side
        for (uint32_t i = 0; i < fh.block; ++i) ch1[i] = ch0[i] - ch1[i];
      } else if (fh.assignment == 9) {  // side / right
        for (uint32_t i = 0; i < fh.block; ++i) ch0[i] = ch0[i] + ch1[i];
      } else if (fh.assignment == 10) {  // mid / side
        for (uint32_t i = 0; i < fh.block; ++i) {
          int64_t side = ch1[i];
          int64_t mid = (int64_t(ch0[i]) * 2) | (side & 1);
          ch0[i] = int32_t((mid + side) >> 1);
          ch1[i] = int32_t((mid - side) >> 1);
        }
      }
      if (si.total > 0)
        OP_REQUIRES(ctx, done + fh.block <= si.total, tensorflow::errors::InvalidArgument(
            name, ": corrupt FLAC file (more samples than the ", si.total, " in its header)", hint));
      if (direct) {
        float* o = dst + done * C;
        for (uint32_t i = 0; i < fh.block; ++i)
          for (uint32_t c = 0; c < C; ++c) o[size_t(i) * C + c] = float(buf[size_t(c) * fh.block + i]) * scale;
      } else {
        size_t base = grow.size();
        grow.resize(base + size_t(fh.block) * C);
        for (uint32_t i = 0; i < fh.block; ++i)
          for (uint32_t c = 0; c < C; ++c) grow[base + size_t(i) * C + c] = float(buf[size_t(c) * fh.block + i]) * scale;
      }
      done += fh.block;
      p += size_t(body) + 2;
    }
    if (si.total > 0)
      OP_REQUIRES(ctx, done == si.total, tensorflow::errors::InvalidArgument(
          name, ": truncated FLAC file (", done, " of ", si.total, " samples present)", hint));
    if (!direct) {
      OP_REQUIRES(ctx, done > 0, tensorflow::errors::InvalidArgument(name, ": FLAC file has no audio frames", hint));
      OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({int64_t(done), int64_t(C)}), &out));
      std::memcpy(out->flat<float>().data(), grow.data(), grow.size() * sizeof(float));
    }
    Tensor* rate = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({}), &rate));
    rate->scalar<int32_t>()() = int32_t(si.rate);
  }
};

}  // namespace

REGISTER_OP("KerasDssdnDecodeFlac")
    .Input("contents: string")
    .Input("source: string")
    .Output("samples: float")
    .Output("sample_rate: int32")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Matrix(c->UnknownDim(), c->UnknownDim()));
      c->set_output(1, c->Scalar());
      return ::tensorflow::OkStatus();
    })
    .Doc("Decode FLAC bytes to float32 [frames, channels] in [-1, 1] and the sample rate.");

REGISTER_KERNEL_BUILDER(Name("KerasDssdnDecodeFlac").Device(tensorflow::DEVICE_CPU), DecodeFlacOp);
