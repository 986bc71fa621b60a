"""The CPU's int8/bf16 instruction sets, recorded with CPU artifacts, and the warning when an
INT8 file made for another family runs here (issue 11)."""

from __future__ import annotations

from edgeft.platform import cpu


def test_this_cpu_is_described():
    info = cpu.cpu_isa()
    assert info["int8"] in ("amx", "vnni", "avx2", "arm-dot", "none")
    assert isinstance(info["bf16"], bool) and isinstance(info["isa"], list)
    int8 = cpu.cpu_int8_info()
    assert int8["reduce_range"] == (
        int8["machine"] in ("x86_64", "amd64") and int8["int8"] not in ("vnni", "amx")
    )
    assert info["model"] in cpu.describe_cpu()


def test_an_int8_file_from_another_family_gets_one_line_of_advice(monkeypatch):
    vnni = {"machine": "x86_64", "int8": "vnni", "reduce_range": False}
    avx2 = {"machine": "x86_64", "int8": "avx2", "reduce_range": True}
    monkeypatch.setattr(cpu, "cpu_int8_info", lambda: dict(vnni, isa="avx512_vnni"))
    assert "7-bit weights" in cpu.isa_mismatch(avx2) and "re-export it here" in cpu.isa_mismatch(
        avx2
    )
    assert cpu.isa_mismatch(vnni) is None
    assert (
        cpu.isa_mismatch({**avx2, "machine": "aarch64"}) is None
    )  # another architecture: no advice
    assert cpu.isa_mismatch(None) is None
    monkeypatch.setattr(cpu, "cpu_int8_info", lambda: dict(avx2, isa="avx2"))
    assert "can saturate" in cpu.isa_mismatch(vnni)
