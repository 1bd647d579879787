"""The C front end built for the emulated Cortex-M4F (arm-none-eabi-gcc, QEMU mps2-an386) vs the Python front end.

Needs no TFLM: the Arm toolchain and qemu-system-arm only (skipped with the Debian packages named otherwise).
The rule is the host check's (keras_dssdn.deploy.host_check): >= 99.9 % of int8 values equal, max 1 step.
"""

import dataclasses

import numpy as np
import pytest

from keras_dssdn.deploy import cfrontend, host_check
from keras_dssdn.frontend_constants import Quantization
from keras_dssdn.firmware import project, qemu, toolchain
from keras_dssdn.firmware.errors import FirmwareFitError, FirmwareRunError, TargetMismatchError, ToolchainError
from keras_dssdn.firmware.frontend_target import build_frontend_program, check_frontend_on_target, \
    run_target_frontend
from keras_dssdn.firmware.targets import get_target

from _firmware_helpers import evaluate_clips, mcu_frontend, needs_arm, small_frontend

M4F = get_target("cortex-m4f")


@needs_arm
def test_test_signals_match_the_python_front_end_on_the_m4f():
    """Silence, square wave, clipping, noise, impulses, a sweep (two segments each) through the target's front end."""
    fe, stats, consts = small_frontend()
    report = check_frontend_on_target(cfrontend.frontend_c_sources(consts), consts, M4F, log=lambda *a: 0)
    parity = report["signals"]["parity"]
    assert parity["values"] == 14 * fe.n_mels * consts.frames
    assert parity["equal_fraction"] >= host_check.MIN_EQUAL_FRACTION and parity["max_step"] <= host_check.MAX_STEP
    cost = report["signals"]["cost"]
    assert cost["segments"] == 14 and cost["instructions_per_segment"] > 10_000


@needs_arm
def test_real_clips_at_the_dcase_mcu_1s_settings(tmp_path, shared_data):
    """Two real TUT 2017 clips (20 one-second segments) at 44.1 kHz, FFT 2048, 64 bands; a padded partial segment."""
    fe, stats, consts = mcu_frontend()
    clips = evaluate_clips(shared_data, 2)
    pcm = np.concatenate(list(host_check.clip_batches(clips, fe, 10.0)))
    elf = build_frontend_program(cfrontend.frontend_c_sources(consts), str(tmp_path), M4F)
    shape = (64, consts.frames)
    c, cost = run_target_frontend(elf, M4F, pcm, shape)
    py = host_check.python_int8_tensors(pcm, consts)
    parity = host_check.tensor_parity(c, py)
    assert c.shape == (20, 64, 44, 1) and cost["segments"] == 20
    assert parity["equal_fraction"] >= host_check.MIN_EQUAL_FRACTION and parity["max_step"] <= host_check.MAX_STEP
    cut = pcm[:1, :int(1.5 * 44100)]  # the second segment: half audio, half zeros (dssdn_fe_flush)
    c, _ = run_target_frontend(elf, M4F, cut, shape, pad=True)
    py = host_check.python_int8_tensors(cut, consts, pad=True)
    assert len(c) == 2 and host_check.tensor_parity(c, py)["max_step"] <= host_check.MAX_STEP


@needs_arm
def test_a_wrong_constant_fails_on_the_target():
    """The comparison can fail: an int8 offset two steps off is refused with the target named."""
    fe, stats, consts = small_frontend()
    q = consts.input_quantization  # the fused map's offset is zero_point - mean x scale: two steps more
    wrong = dataclasses.replace(consts, input_quantization=Quantization(q.scale, q.zero_point + 2))
    with pytest.raises(TargetMismatchError, match="built for cortex-m4f.*2 quantisation steps"):
        check_frontend_on_target(cfrontend.frontend_c_sources(wrong), consts, M4F, log=lambda *a: 0)


@needs_arm
@pytest.mark.parametrize("name", ["cortex-m4f", "cortex-m55"])
def test_instruction_counts_are_calibrated(tmp_path, name):
    """Under -icount shift=0 the board counter gives instructions to +-40: a loop of known length is counted so."""
    target = get_target(name)
    project.write_target_files(str(tmp_path), target)
    project.write_text(str(tmp_path), "main.c", """
#include <stdio.h>
#include "dssdn_target.h"
int main(void) {
  int i = 250000;
  uint32_t t0 = DSSDN_TICKS();
  __asm volatile("1: subs %0, %0, #1\\n bne 1b" : "+r"(i));  /* 2 instructions per iteration */
  printf("loop ticks=%lu\\n", (unsigned long)(DSSDN_TICKS() - t0));
  return 0;
}
""")
    project.write_makefile(str(tmp_path), target, project.Sources(c=["startup.c", "main.c"], includes=["."]), "loop",
                           "t")
    elf = project.build(str(tmp_path), "loop")
    ticks = qemu.parse_fields(qemu.find_line(qemu.run_program(elf, target, timeout=30), "loop"))["ticks"]
    assert abs(ticks * target.instructions_per_tick - 500_000) <= 2 * target.instructions_per_tick


#: A program that hangs, and one that faults: each stopped with what the user needs to see.
_BAD_PROGRAMS = {
    "hang": ('#include <stdio.h>\nint main(void) {\n  printf("about to hang\\n");\n  fflush(stdout);\n  for (;;) {\n  }\n}\n',
             2, r"(?s)did not finish within 2 s.*about to hang"),
    "fault": ("#include <stdint.h>\nint main(void) {\n"
              "  return *(volatile int*)0xF0000000u;  /* no memory there: a bus fault */\n}\n",
              10, r"(?s)faulted on mps2-an386.*pc=0x"),
}


@needs_arm
@pytest.mark.parametrize("kind", sorted(_BAD_PROGRAMS))
def test_a_hang_or_a_fault_is_stopped_with_the_last_output_or_the_pc(tmp_path, kind):
    source, timeout, message = _BAD_PROGRAMS[kind]
    project.write_target_files(str(tmp_path), M4F)
    project.write_text(str(tmp_path), "main.c", source)
    project.write_makefile(str(tmp_path), M4F, project.Sources(c=["startup.c", "main.c"]), kind, "t")
    elf = project.build(str(tmp_path), kind)
    with pytest.raises(FirmwareRunError, match=message):
        qemu.run_program(elf, M4F, timeout=timeout)


@needs_arm
def test_a_program_too_big_for_the_part_names_the_overflow(tmp_path):
    """The front end program linked for a part with 8 KB of RAM: the overflow in bytes, no linker dump."""
    fe, stats, consts = small_frontend()
    build_frontend_program(cfrontend.frontend_c_sources(consts), str(tmp_path), M4F)
    project.write_target_files(str(tmp_path), M4F, ram_bytes=8 * 1024)
    with pytest.raises(FirmwareFitError, match=r"RAM overflowed by [\d,]+ bytes") as e:
        project.build(str(tmp_path), "fe_main")
    assert "bin/ld" not in str(e.value) and "collect2" not in str(e.value) and len(str(e.value)) < 400


def test_a_missing_toolchain_names_the_debian_packages(monkeypatch):
    monkeypatch.setenv("DSSDN_ARM_PREFIX", "no-such-prefix-")
    with pytest.raises(ToolchainError, match="no-such-prefix-gcc.*apt-get install gcc-arm-none-eabi "
                                             "libnewlib-arm-none-eabi"):
        toolchain.require(("gcc",))
    assert "\n" not in str(pytest.raises(ToolchainError, toolchain.require, ("gcc",)).value)


@needs_arm
def test_linker_figures_add_up_to_the_elf(tmp_path):
    """Flash and RAM by part from the map file: the front end's constants are in its flash, the linker script's heap
    and stack are the RAM they reserve, and the totals agree with arm-none-eabi-size's Berkeley figures."""
    from keras_dssdn.firmware import linker

    fe, stats, consts = small_frontend()
    elf = build_frontend_program(cfrontend.frontend_c_sources(consts), str(tmp_path), M4F)
    mem = linker.memory_report(elf, str(tmp_path / "fe_main.map"))
    assert mem["flash"]["front end"] >= cfrontend.frontend_flash_bytes(consts)
    assert mem["ram"]["heap"] == project.HEAP_BYTES and mem["ram"]["stack"] == project.STACK_BYTES
    import subprocess  # the Berkeley figures of arm-none-eabi-size: flash = text + data, RAM = data + bss
    text, data, bss = map(int, subprocess.run(["arm-none-eabi-size", elf], capture_output=True, text=True,
                                              check=True).stdout.splitlines()[1].split()[:3])
    assert mem["flash"]["total"] == text + data
    arrays = sum(mem["sections"].get(s, 0) for s in (".preinit_array", ".init_array", ".fini_array"))
    assert mem["ram"]["total"] == data + bss - arrays  # size counts the (flash) constructor tables as data
