"""Running the benchmark as on an AVX2-only CPU: the environment every library reads, and the labels."""

from __future__ import annotations

from bench.isa import AVX2, active_isa, isa_label, limited_environment


def test_the_avx2_limit_sets_every_librarys_switch_and_marks_the_process():
    environment = limited_environment("avx2", base={"PATH": "/bin"})
    assert environment == {"PATH": "/bin", **AVX2, "MEGA_ASR_BENCH_ISA": "avx2"}
    assert set(AVX2) == {"ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                         "FBGEMM_ENABLE_INSTRUCTIONS", "CT2_FORCE_CPU_ISA"}
    assert limited_environment("native", base={"PATH": "/bin"}) == {"PATH": "/bin"}


def test_figures_are_labelled_with_the_isa_they_ran_under(monkeypatch):
    monkeypatch.delenv("MEGA_ASR_BENCH_ISA", raising=False)
    assert active_isa() == "native" and isa_label().startswith("native (ATen ")
    monkeypatch.setenv("MEGA_ASR_BENCH_ISA", "avx2")
    label = isa_label()
    assert label.startswith("AVX2-limited (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2") and "; ATen " in label
