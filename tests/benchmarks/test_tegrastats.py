"""benchmarks.tegrastats: the parser on real tegrastats lines, summarize, the sampler.

Every line below was copied verbatim from public output of a real board; the comment
above it names the board and the source.
"""

from __future__ import annotations

import itertools
import stat
import time

import pytest

from benchmarks.tegrastats import THROTTLE_DEFINITION, parse_line, summarize
from benchmarks.tegrastats_sampler import TegrastatsError, TegrastatsSampler, TegrastatsUnavailable

# Jetson Nano (JetPack 4, root, detectnet running), four consecutive lines from
# https://github.com/dusty-nv/jetson-inference/issues/1206 (comment of 2021-09-01).
NANO_JP4 = [
    "RAM 1501/3956MB (lfb 332x4MB) IRAM 0/252kB(lfb 252kB) CPU [16%@1479,13%@1479,10%@1479,4%@1479] EMC_FREQ 4%@1600 GR3D_FREQ 28%@76 NVDEC 716 VIC_FREQ 0%@140 APE 25 PLL@39C CPU@44C PMIC@100C GPU@41.5C AO@47.5C thermal@42.5C POM_5V_IN 4122/3107 POM_5V_GPU 109/85 POM_5V_CPU 1167/748",
    "RAM 1504/3956MB (lfb 331x4MB) IRAM 0/252kB(lfb 252kB) CPU [44%@1479,22%@1479,26%@1479,14%@1479] EMC_FREQ 7%@1600 GR3D_FREQ 86%@921 NVDEC 716 VIC_FREQ 0%@140 APE 25 PLL@39C CPU@44C PMIC@100C GPU@42.5C AO@47.5C thermal@42.5C POM_5V_IN 4531/3285 POM_5V_GPU 1113/213 POM_5V_CPU 539/722",
    "RAM 1504/3956MB (lfb 331x4MB) IRAM 0/252kB(lfb 252kB) CPU [19%@1479,27%@1479,23%@1479,19%@1479] EMC_FREQ 9%@1600 GR3D_FREQ 99%@921 NVDEC 716 VIC_FREQ 0%@140 APE 25 PLL@39.5C CPU@43.5C PMIC@100C GPU@43C AO@48C thermal@43C POM_5V_IN 4523/3422 POM_5V_GPU 1113/313 POM_5V_CPU 538/701",
    "RAM 1504/3956MB (lfb 331x4MB) IRAM 0/252kB(lfb 252kB) CPU [29%@1479,36%@1479,18%@1479,11%@1479] EMC_FREQ 10%@1600 GR3D_FREQ 99%@921 NVDEC 716 VIC_FREQ 0%@140 APE 25 PLL@39.5C CPU@43.5C PMIC@100C GPU@43C AO@48C thermal@43.25C POM_5V_IN 4531/3533 POM_5V_GPU 1256/407 POM_5V_CPU 466/678",
]

# Jetson TX1 on L4T 28.1 (the old "cpu [X%,Y%]@MHz" form, GR3D/EMC without _FREQ), from
# https://github.com/hordiales/jetson-tx1-dev/blob/master/SCRIPTS.md
TX1_L4T28 = "RAM 3468/3983MB (lfb 48x4MB) SWAP 873/8192MB (cached 295MB) cpu [17%,13%,29%,5%]@408 EMC 1%@408 APE 25 GR3D 3%@76"

# Jetson TX2-class board (two Denver cores "off"), JetPack 4.6, tegrastats without root
# (no GPU clock, no rails), from https://github.com/rbonghi/jetson_stats/issues/187
TX2_OFF_CORES = "RAM 1689/3825MB (lfb 339x4MB) SWAP 0/1913MB (cached 0MB) CPU [3%@345,off,off,0%@345,1%@345,1%@345] EMC_FREQ 0% GR3D_FREQ 0% PLL@50.5C MCPU@50.5C PMIC@50C GPU@50C BCPU@50.5C thermal@50.3C"

# Jetson AGX Xavier, JetPack 4.2 (rails named GPU/CPU/SOC/CV/VDDRQ/SYS5V, no input rail),
# from https://github.com/martinkersner/gtop/pull/7 (comment of 2019-06-17).
XAVIER_AGX_JP42 = "RAM 14700/15692MB (lfb 3x2MB) SWAP 898/8192MB (cached 23MB) CPU [0%@1190,0%@1190,0%@1190,0%@1190,0%@1190,0%@1190,0%@1190,0%@1190] EMC_FREQ 0% GR3D_FREQ 0% AO@30C GPU@30.5C Tboard@31C Tdiode@32C AUX@30.5C CPU@31.5C thermal@30.8C PMIC@100C GPU 463/463 CPU 618/618 SOC 2936/2936 CV 0/0 VDDRQ 309/309 SYS5V 3306/3306"

# Jetson Orin NX 8GB class (6 cores, NVDLA0, 7620MB), JetPack 6, under video load, from
# https://github.com/rbonghi/jetson_stats/issues/624
ORIN_NX_JP6 = "05-15-2025 18:30:28 RAM 6982/7620MB (lfb 5x1MB) SWAP 2640/16384MB (cached 202MB) CPU [97%@1984,95%@1984,95%@1984,91%@1984,88%@1984,93%@247] EMC_FREQ 18%@3199 GR3D_FREQ 84%@[713] NVENC 1%@115 NVDEC 40%@115 NVJPG off NVJPG1 off VIC 31%@115 OFA off NVDLA0 off PVA0_FREQ off APE 174 cv0@63.031C cpu@65.562C soc2@64.156C soc0@63.031C cv1@62.937C gpu@63.5C tj@65.562C soc1@64.718C cv2@60.875C VDD_IN 17946mW/15710mW VDD_CPU_GPU_CV 8896mW/7585mW VDD_SOC 3923mW/3515mW"

# Jetson AGX Orin 64GB (12 cores, 62801MB), idle, GPU power-gated (GPU@-256C), from
# https://github.com/GDWR/jetson_exporter/issues/14
AGX_ORIN_IDLE = "04-11-2025 10:36:27 RAM 4321/62801MB (lfb 1759x4MB) SWAP 19/31400MB (cached 0MB) CPU [0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[0,0] VIC_FREQ 729 APE 174 CV0@-256C CPU@44.562C Tboard@32C SOC2@40.093C Tdiode@33C SOC0@41.093C CV1@-256C GPU@-256C tj@44.343C SOC1@41.25C CV2@-256C VDD_GPU_SOC 2340mW/2340mW VDD_CPU_CV 390mW/390mW VIN_SYS_5V0 4025mW/4025mW NC 0mW/0mW VDDQ_VDD2_1V8AO 301mW/301mW NC 0mW/0mW"

# Jetson AGX Orin Developer Kit on JetPack 7.2 (L4T R39.2): "temp/temp" and three rail
# values, from the test data of rbonghi/jetson_stats commit 2386a023 (a real line per its
# comment): https://github.com/rbonghi/jetson_stats/blob/2386a023d2d159808f579b2462ae27ad85a0db0f/jtop/tests/test_06_tegra_parse.py
AGX_ORIN_JP72 = (
    "07-25-2026 09:08:28 RAM 20642/62817MB (lfb 1x2MB) "
    "CPU [23%@2201,10%@2201,4%@2201,14%@2201,30%@2201,18%@2201,10%@2201,10%@2201,33%@2201,7%@2201,5%@2201,27%@2201] "
    "EMC_FREQ 3%@3199 GR3D_FREQ 12%@[1300,1300] NVENC0 off NVDEC0 off NVJPG0 off NVJPG1 off VIC off OFA off "
    "NVDLA0 off NVDLA1 off PVA0_FREQ off APE 174 "
    "cpu@52.968C/52.968C soc2@48.406C/48.406C soc0@49.531C/49.531C gpu@47.625C/47.625C "
    "VDD_GPU_SOC 5139mW/5139mW/5139mW VDD_CPU_CV 3268mW/3268mW/3268mW VIN_SYS_5V0 5500mW/5500mW/5500mW"
)


def test_nano_jetpack4_line():
    s = parse_line(NANO_JP4[1])
    assert s["timestamp"] is None
    assert s["ram"] == {"used_mb": 1504, "total_mb": 3956}
    assert s["swap"] is None
    assert [c["load"] for c in s["cpu"]] == [44, 22, 26, 14]
    assert {c["freq_mhz"] for c in s["cpu"]} == {1479}
    assert s["gpu"]["load"] == 86 and s["gpu"]["freq_mhz"] == 921
    assert s["emc"]["load"] == 7 and s["emc"]["freq_mhz"] == 1600
    assert s["engines"]["NVDEC"]["freq_mhz"] == 716
    assert s["engines"]["APE"]["freq_mhz"] == 25
    assert s["engines"]["VIC_FREQ"] == {
        "load": 0,
        "freq_mhz": 140,
        "freqs_mhz": [140],
        "off": False,
    }
    assert s["temps_c"] == {
        "PLL": 39.0,
        "CPU": 44.0,
        "PMIC": 100.0,
        "GPU": 42.5,
        "AO": 47.5,
        "thermal": 42.5,
    }
    assert s["rails"] == {
        "POM_5V_IN": {"cur_mw": 4531, "avg_mw": 3285},
        "POM_5V_GPU": {"cur_mw": 1113, "avg_mw": 213},
        "POM_5V_CPU": {"cur_mw": 539, "avg_mw": 722},
    }


def test_tx1_old_cpu_form_and_short_engine_names():
    s = parse_line(TX1_L4T28)
    assert [c["load"] for c in s["cpu"]] == [17, 13, 29, 5]
    assert all(c["freq_mhz"] == 408 and c["online"] for c in s["cpu"])
    assert s["gpu"]["load"] == 3 and s["gpu"]["freq_mhz"] == 76
    assert s["emc"]["load"] == 1 and s["emc"]["freq_mhz"] == 408
    assert s["swap"] == {"used_mb": 873, "total_mb": 8192, "cached_mb": 295}
    assert s["rails"] == {} and s["temps_c"] == {}


def test_offline_cores_and_gpu_without_clock():
    s = parse_line(TX2_OFF_CORES)
    assert [c["online"] for c in s["cpu"]] == [True, False, False, True, True, True]
    assert s["cpu"][1] == {"load": None, "freq_mhz": None, "online": False}
    assert s["cpu"][0] == {"load": 3, "freq_mhz": 345, "online": True}
    assert s["gpu"] == {"load": 0, "freq_mhz": None, "freqs_mhz": [], "off": False}
    assert s["temps_c"]["BCPU"] == 50.5 and s["temps_c"]["PMIC"] == 50.0
    assert s["rails"] == {}


def test_agx_xavier_rails_without_vdd_prefix():
    s = parse_line(XAVIER_AGX_JP42)
    assert s["ram"] == {"used_mb": 14700, "total_mb": 15692}
    assert len(s["cpu"]) == 8
    assert s["rails"]["GPU"] == {"cur_mw": 463, "avg_mw": 463}
    assert s["rails"]["SYS5V"] == {"cur_mw": 3306, "avg_mw": 3306}
    assert set(s["rails"]) == {"GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"}
    assert s["temps_c"]["GPU"] == 30.5 and s["temps_c"]["Tdiode"] == 32.0
    assert s["gpu"]["load"] == 0 and s["gpu"]["freq_mhz"] is None


def test_orin_nx_jetpack6_line():
    s = parse_line(ORIN_NX_JP6)
    assert s["timestamp"] == "2025-05-15T18:30:28"
    assert s["swap"] == {"used_mb": 2640, "total_mb": 16384, "cached_mb": 202}
    assert s["cpu"][5] == {"load": 93, "freq_mhz": 247, "online": True}
    assert s["gpu"] == {"load": 84, "freq_mhz": 713, "freqs_mhz": [713], "off": False}
    assert s["engines"]["NVDEC"]["load"] == 40
    assert s["engines"]["NVJPG"]["off"] is True
    assert s["engines"]["APE"]["freq_mhz"] == 174
    assert s["temps_c"]["tj"] == 65.562 and s["temps_c"]["gpu"] == 63.5
    assert s["rails"] == {
        "VDD_IN": {"cur_mw": 17946, "avg_mw": 15710},
        "VDD_CPU_GPU_CV": {"cur_mw": 8896, "avg_mw": 7585},
        "VDD_SOC": {"cur_mw": 3923, "avg_mw": 3515},
    }


def test_agx_orin_powered_off_sensors_and_nc_rails():
    s = parse_line(AGX_ORIN_IDLE)
    assert s["timestamp"] == "2025-04-11T10:36:27"
    assert len(s["cpu"]) == 12
    assert s["gpu"]["load"] == 0 and s["gpu"]["freqs_mhz"] == [0, 0]
    assert sorted(s["temps_off"]) == ["CV0", "CV1", "CV2", "GPU"]
    assert "GPU" not in s["temps_c"]
    assert s["temps_c"]["tj"] == 44.343
    assert s["rails"] == {
        "VDD_GPU_SOC": {"cur_mw": 2340, "avg_mw": 2340},
        "VDD_CPU_CV": {"cur_mw": 390, "avg_mw": 390},
        "VIN_SYS_5V0": {"cur_mw": 4025, "avg_mw": 4025},
        "VDDQ_VDD2_1V8AO": {"cur_mw": 301, "avg_mw": 301},
    }


def test_agx_orin_jetpack7_three_value_rails_and_slash_temps():
    s = parse_line(AGX_ORIN_JP72)
    assert s["gpu"]["load"] == 12 and s["gpu"]["freqs_mhz"] == [1300, 1300]
    assert s["emc"]["freq_mhz"] == 3199
    assert s["temps_c"] == {"cpu": 52.968, "soc2": 48.406, "soc0": 49.531, "gpu": 47.625}
    assert s["rails"]["VDD_GPU_SOC"] == {"cur_mw": 5139, "avg_mw": 5139, "extra_mw": [5139]}
    assert s["engines"]["NVDLA1"]["off"] is True


def test_unknown_tokens_and_garbage_are_not_fatal():
    s = parse_line("MTS fg 0% bg 0% FOO_BAR ??? " + NANO_JP4[0] + " trailing@junk")
    assert s["gpu"]["load"] == 28
    empty = parse_line("tegrastats: some message that is not a stats line")
    assert empty["ram"] is None and empty["cpu"] == [] and empty["rails"] == {}


def test_summarize_nano_run():
    out = summarize([parse_line(line) for line in NANO_JP4])
    assert out["sample_count"] == 4
    assert out["rails"]["POM_5V_IN"] == {"avg": 4.427, "peak": 4.531, "samples": 4}
    assert out["rails"]["POM_5V_GPU"] == {"avg": 0.898, "peak": 1.256, "samples": 4}
    assert out["total"]["rail"] == "POM_5V_IN" and out["total"]["basis"] == "input_rail"
    assert out["total"]["peak"] == 4.531
    assert out["gpu_load_pct"] == {"avg": 78.0, "peak": 99, "samples": 4}
    assert out["gpu_freq_mhz"] == {"min": 76, "max": 921}
    assert out["temps_c"]["CPU"] == {"avg": 43.75, "max": 44.0, "samples": 4}
    assert out["ram_used_mb_peak"] == 1504
    assert out["throttling"]["detected"] is False
    assert out["throttling"]["definition"] == THROTTLE_DEFINITION


def test_summarize_boards_without_input_rail_sum_rails():
    xavier = summarize([parse_line(XAVIER_AGX_JP42)])
    assert xavier["total"]["basis"] == "sum_of_rails"
    assert xavier["total"]["avg"] == 7.632  # 463+618+2936+0+309+3306 mW
    orin = summarize([parse_line(AGX_ORIN_IDLE)])
    assert orin["total"]["avg"] == 7.056  # NC rails dropped
    assert orin["total"]["rails_summed"] == [
        "VDDQ_VDD2_1V8AO",
        "VDD_CPU_CV",
        "VDD_GPU_SOC",
        "VIN_SYS_5V0",
    ]
    nx = summarize([parse_line(ORIN_NX_JP6)])
    assert nx["total"] == {
        "rail": "VDD_IN",
        "basis": "input_rail",
        "avg": 17.946,
        "peak": 17.946,
        "samples": 1,
    }


def test_over_temperature_limit_counts_as_throttling():
    out = summarize([parse_line(line) for line in NANO_JP4], temp_limits_c={"cpu": 44.0})
    events = out["throttling"]["events"]
    assert out["throttling"]["detected"] is True
    assert [(e["kind"], e["what"], e["sample"]) for e in events] == [
        ("over_temp", "CPU", 0),
        ("over_temp", "CPU", 1),
    ]


def test_gpu_clock_drop_under_load_counts_as_throttling():
    # Synthetic: the real Nano line NANO_JP4[3] with its GPU clock edited from 921 to 614
    # MHz, standing for a capped clock at 99% load after the run had reached 921 MHz.
    capped = NANO_JP4[3].replace("GR3D_FREQ 99%@921", "GR3D_FREQ 99%@614")
    out = summarize([parse_line(line) for line in (*NANO_JP4[:3], capped)])
    assert out["throttling"]["detected"] is True
    (event,) = out["throttling"]["events"]
    assert event == {
        "kind": "clock_drop",
        "what": "GPU",
        "sample": 3,
        "load_pct": 99,
        "freq_mhz": 614,
        "max_seen_mhz": 921,
    }


def test_summarize_empty_and_without_clock_data():
    assert summarize([])["sample_count"] == 0
    out = summarize([])
    assert out["total"] is None and out["throttling"]["detected"] is None
    # Without root no GPU clock, and the CPU loads are low: nothing to flag.
    assert summarize([parse_line(TX2_OFF_CORES)])["throttling"]["detected"] is False


def test_span_from_received_time_or_timestamps():
    a, b = parse_line(NANO_JP4[0]), parse_line(NANO_JP4[1])
    a["received_s"], b["received_s"] = 0.1, 0.6
    assert summarize([a, b])["span_s"] == 0.5
    c, d = parse_line(AGX_ORIN_IDLE), parse_line(AGX_ORIN_IDLE.replace("10:36:27", "10:36:29", 1))
    assert summarize([c, d])["span_s"] == 2.0


def _fake_tegrastats(tmp_path, lines, *, exit_code=None):
    (tmp_path / "lines.txt").write_text("\n".join(lines) + "\n")
    body = (
        f'echo "$@" > "{tmp_path}/args.txt"\n'
        + (f"echo boom; exit {exit_code}\n" if exit_code is not None else "")
        + f'while true; do\n  while IFS= read -r line; do\n    echo "$line"\n    sleep 0.02\n'
        f'  done < "{tmp_path}/lines.txt"\ndone\n'
    )
    script = tmp_path / "tegrastats"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_sampler_with_fake_tegrastats(tmp_path):
    script = _fake_tegrastats(tmp_path, NANO_JP4)
    with TegrastatsSampler(interval_ms=100, executable=str(script)) as sampler:
        deadline = time.monotonic() + 10
        while len(sampler.samples) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert (tmp_path / "args.txt").read_text().split() == ["--interval", "100"]
    samples = sampler.samples
    assert len(samples) >= 6
    assert samples[0]["rails"]["POM_5V_IN"]["cur_mw"] == 4122
    assert samples[1]["gpu"]["freq_mhz"] == 921
    assert all(b["received_s"] >= a["received_s"] for a, b in itertools.pairwise(samples))
    assert sampler._proc.poll() is not None  # stopped on exit
    count = len(samples)
    time.sleep(0.1)
    assert len(sampler.samples) == count  # nothing more arrives after the block
    summary = sampler.summary()
    assert summary["sample_count"] == count and summary["interval_ms"] == 100
    assert summary["total"]["rail"] == "POM_5V_IN" and summary["span_s"] > 0


def test_sampler_refuses_where_there_is_no_tegrastats(tmp_path):
    with pytest.raises(TegrastatsUnavailable, match="does not look like an NVIDIA Jetson"):
        TegrastatsSampler(executable=str(tmp_path / "tegrastats")).start()


def test_sampler_reports_a_tegrastats_that_fails(tmp_path):
    script = _fake_tegrastats(tmp_path, NANO_JP4, exit_code=3)
    sampler = TegrastatsSampler(executable=str(script)).start()
    sampler._proc.wait(timeout=5)
    with pytest.raises(TegrastatsError, match="status 3: boom"):
        sampler.stop()
