"""edgeft.platform.jetson: Jetson detection and the report probes, fed recorded real outputs.

Each recorded output names its source. A fake root directory stands for ``/`` and a
fake runner returns recorded command output (``None`` = tool not installed).
"""

from __future__ import annotations

import pytest

from edgeft.platform.jetson import (
    NotAJetsonError,
    clocks_from_sysfs,
    is_jetson,
    jetpack_version,
    jetson_info,
    parse_jetson_clocks_show,
    parse_nv_tegra_release,
    parse_nvpmodel_query,
    require_jetson,
    throttle_trip_points_c,
)

# /etc/nv_tegra_release of a Jetson Nano on JetPack 4.6.6, from
# https://github.com/ay65535/dotfiles/blob/master/local/share/jetson-nano/firstrun.sh
NANO_RELEASE = "# R32 (release), REVISION: 7.6, GCID: 38171779, BOARD: t210ref, EABI: aarch64, DATE: Tue Nov  5 07:46:14 UTC 2024\n"
# /proc/device-tree/model of a Jetson Nano (JetPack 4.3), from
# https://github.com/rbonghi/jetson_stats/issues/48
NANO_MODEL = "NVIDIA Jetson Nano Developer Kit\x00"

# /etc/nv_tegra_release of a Jetson TX2 (jtop showed "Jetpack 4.5.1 [L4T 32.5.1]"), from
# https://github.com/pokusew/ros-setup/blob/master/nvidia-jetson-tx2/L4T.md
TX2_RELEASE = "# R32 (release), REVISION: 5.1, GCID: 26202423, BOARD: t186ref, EABI: aarch64, DATE: Fri Feb 19 16:50:29 UTC 2021\n"

# AGX Orin Developer Kit on L4T R39.2 (JetPack 7.2): release file and
# /sys/firmware/devicetree/base/model, from https://github.com/rbonghi/jetson_stats/issues/864
AGX_ORIN_R39_RELEASE = "# R39 (release), REVISION: 2.0, GCID: 45755727, BOARD: generic, EABI: aarch64, DATE: Mon Jun  1 09:28:48 PM UTC 2026\n"
AGX_ORIN_MODEL = "NVIDIA Jetson AGX Orin Developer Kit"

# /proc/device-tree/model of an Orin NX devkit (no "Jetson" in it), from
# https://github.com/ultralytics/ultralytics/pull/9876
ORIN_NX_MODEL = "NVIDIA Orin NX Developer Kit"
# /proc/device-tree/compatible of an AGX Orin 64GB (entries NUL-separated in the file;
# the issue shows them run together), from https://github.com/NVIDIA/jetson-gpio/issues/125
AGX_ORIN_COMPATIBLE = (
    "nvidia,p3737-0000+p3701-0005\x00nvidia,p3701-0005\x00nvidia,tegra234\x00nvidia,tegra23x\x00"
)

# `apt-cache show nvidia-jetpack` Version on a Nano with JetPack 4.5 (dpkg-query -W
# prints the same Version field), from https://github.com/Qengineering/Jover/issues/3
JETPACK_45_DPKG_VERSION = "4.5-b129"

# `nvpmodel -q` on a Jetson AGX Thor (JetPack 7), from
# https://github.com/anduril/jetpack-nixos/pull/460
NVPMODEL_THOR = "NV Power Mode: MAXN\n0\n"
# `sudo /usr/sbin/nvpmodel -q` on a Jetson AGX Xavier (fan mode line, id not shown), from
# https://github.com/open-rdc/orne-box/issues/16
NVPMODEL_XAVIER = "NV Fan Mode:quiet\nNV Power Mode: MAXN\n"

# `jetson_clocks --show` on a Jetson TX2 (clocks not locked, Denver cores offline), as
# recorded in the jetson_clocks emulator of
# https://github.com/rbonghi/jetson_stats/blob/fab55a16de1d31a36da5866e2ef3d89c5591192b/tests/jetson_clocks
JETSON_CLOCKS_TX2 = """SOC family:tegra186  Machine:quill
Online CPUs: 0,3-5
CPU Cluster Switching: Disabled
cpu0: Online=1 Governor=schedutil MinFreq=345600 MaxFreq=2035200 CurrentFreq=2035200 IdleStates: C1=1 c7=1
cpu1: Online=0 Governor=schedutil MinFreq=345600 MaxFreq=2035200 CurrentFreq=1113600 IdleStates: C1=1 c6=1 c7=1
cpu2: Online=0 Governor=schedutil MinFreq=345600 MaxFreq=2035200 CurrentFreq=1113600 IdleStates: C1=1 c6=1 c7=1
cpu3: Online=1 Governor=schedutil MinFreq=345600 MaxFreq=2035200 CurrentFreq=1881600 IdleStates: C1=1 c7=1
cpu4: Online=1 Governor=schedutil MinFreq=345600 MaxFreq=2035200 CurrentFreq=2035200 IdleStates: C1=1 c7=1
cpu5: Online=1 Governor=schedutil MinFreq=345600 MaxFreq=2035200 CurrentFreq=2035200 IdleStates: C1=1 c7=1
GPU MinFreq=114750000 MaxFreq=1134750000 CurrentFreq=114750000
EMC MinFreq=40800000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=0
Fan: speed=0
NV Power Mode: MAXP_CORE_ARM
"""

# `./jetson_clocks.sh --show` on a Jetson TX1 (L4T 28.1) after jetson_clocks: every
# minimum raised to the maximum ("Gonvernor" is that script's own typo), from
# https://github.com/hordiales/jetson-tx1-dev/blob/master/SCRIPTS.md
JETSON_CLOCKS_TX1_LOCKED = """SOC family:tegra210  Machine:jetson_tx1
Online CPUs: 0-3
CPU Cluster Switching: Disabled
cpu0: Gonvernor=interactive MinFreq=1734000 MaxFreq=1734000 CurrentFreq=1734000
cpu1: Gonvernor=interactive MinFreq=1734000 MaxFreq=1734000 CurrentFreq=1734000
cpu2: Gonvernor=interactive MinFreq=1734000 MaxFreq=1734000 CurrentFreq=1734000
cpu3: Gonvernor=interactive MinFreq=1734000 MaxFreq=1734000 CurrentFreq=1734000
GPU MinFreq=998400000 MaxFreq=998400000 CurrentFreq=998400000
EMC MinFreq=12750000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1
Fan: speed=255
"""

# dpkg-query's answer for a package that is not installed (dpkg's wording, not a Jetson capture).
NOT_INSTALLED_DPKG = (1, "dpkg-query: no packages found matching nvidia-jetpack\n")


def fake_root(tmp_path, files: dict[str, str]):
    for path, text in files.items():
        target = tmp_path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return str(tmp_path)


def fake_runner(outputs: dict):
    calls = []

    def run(argv):
        calls.append(list(argv))
        return outputs.get(argv[0])

    run.calls = calls
    return run


def test_nv_tegra_release_parsing():
    assert parse_nv_tegra_release(NANO_RELEASE) == {
        "version": "32.7.6",
        "release": "R32.7.6",
        "major": 32,
        "board": "t210ref",
    }
    assert parse_nv_tegra_release(TX2_RELEASE)["version"] == "32.5.1"
    assert parse_nv_tegra_release(AGX_ORIN_R39_RELEASE)["version"] == "39.2.0"
    assert parse_nv_tegra_release("not a release file") is None


def test_is_jetson(tmp_path):
    assert not is_jetson(str(tmp_path))
    assert is_jetson(fake_root(tmp_path / "nano", {"/etc/nv_tegra_release": NANO_RELEASE}))
    assert is_jetson(fake_root(tmp_path / "nx", {"/proc/device-tree/model": ORIN_NX_MODEL}))
    assert is_jetson(
        fake_root(tmp_path / "agx", {"/proc/device-tree/compatible": AGX_ORIN_COMPATIBLE})
    )
    # An ARM board that is not a Jetson (model string written for this test).
    assert not is_jetson(
        fake_root(tmp_path / "pi", {"/proc/device-tree/model": "Raspberry Pi 4 Model B Rev 1.4"})
    )


def test_non_jetson_is_refused_with_a_clear_line(tmp_path):
    assert jetson_info(str(tmp_path), fake_runner({})) is None
    with pytest.raises(NotAJetsonError, match="--device jetson needs an NVIDIA Jetson"):
        require_jetson(str(tmp_path), fake_runner({}))


def test_jetpack_from_dpkg_then_table_then_family():
    dpkg = fake_runner({"dpkg-query": (0, JETPACK_45_DPKG_VERSION)})
    found, _ = jetpack_version(None, dpkg)
    assert found == {
        "version": "4.5",
        "source": "dpkg nvidia-jetpack 4.5-b129",
        "approximate": False,
    }
    assert dpkg.calls == [["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"]]

    nano = parse_nv_tegra_release(NANO_RELEASE)
    found, _ = jetpack_version(nano, fake_runner({"dpkg-query": NOT_INSTALLED_DPKG}))
    assert found["version"] == "4.6.6" and found["approximate"] is False
    assert "not installed" in found["source"]
    found, _ = jetpack_version(parse_nv_tegra_release(TX2_RELEASE), fake_runner({}))
    assert found["version"] == "4.5.1" and "dpkg-query not found" in found["source"]

    orin = parse_nv_tegra_release(AGX_ORIN_R39_RELEASE)
    found, _ = jetpack_version(orin, fake_runner({}))
    assert found["version"] == "7.x" and found["approximate"] is True

    missing, why = jetpack_version(None, fake_runner({}))
    assert missing is None and "L4T release unknown" in why


def test_nvpmodel_query_parsing():
    assert parse_nvpmodel_query(NVPMODEL_THOR) == {"name": "MAXN", "id": 0}
    assert parse_nvpmodel_query(NVPMODEL_XAVIER) == {"name": "MAXN", "id": None}
    assert parse_nvpmodel_query("") is None


def test_jetson_clocks_show_parsing():
    tx2 = parse_jetson_clocks_show(JETSON_CLOCKS_TX2)
    assert tx2["locked"] is False
    assert tx2["cpus_online"] == 4 and tx2["cpus_at_max_min"] == 0
    assert tx2["gpu"] == {"min": 114750000, "max": 1134750000, "cur": 114750000}
    assert tx2["emc"]["override"] == 0
    assert tx2["power_mode"] == "MAXP_CORE_ARM"

    tx1 = parse_jetson_clocks_show(JETSON_CLOCKS_TX1_LOCKED)
    assert tx1["locked"] is True
    assert tx1["cpus_online"] == 4 and tx1["cpus_at_max_min"] == 4
    assert tx1["gpu"]["min"] == tx1["gpu"]["max"] == 998400000
    assert tx1["emc"]["override"] == 1

    assert parse_jetson_clocks_show("Please run as root\n") is None


def _sysfs(tmp_path, cpu_min: int, gpu_min: int):
    # Synthetic sysfs tree; the frequencies are the TX1's from JETSON_CLOCKS_TX1_LOCKED
    # and the devfreq node name is the Nano/TX1 GPU's (57000000.gpu).
    files = {}
    for cpu in range(4):
        base = f"/sys/devices/system/cpu/cpu{cpu}"
        files[f"{base}/online"] = "1\n"
        files[f"{base}/cpufreq/scaling_min_freq"] = f"{cpu_min}\n"
        files[f"{base}/cpufreq/scaling_max_freq"] = "1734000\n"
    files["/sys/class/devfreq/57000000.gpu/min_freq"] = f"{gpu_min}\n"
    files["/sys/class/devfreq/57000000.gpu/max_freq"] = "998400000\n"
    files["/sys/class/devfreq/57000000.gpu/cur_freq"] = "998400000\n"
    return fake_root(tmp_path, files)


def test_clocks_from_sysfs(tmp_path):
    locked = clocks_from_sysfs(_sysfs(tmp_path / "a", 1734000, 998400000))
    assert locked["locked"] is True and locked["source"] == "sysfs"
    assert locked["gpu"] == {"min": 998400000, "max": 998400000, "cur": 998400000}
    assert clocks_from_sysfs(_sysfs(tmp_path / "b", 102000, 998400000))["locked"] is False
    assert clocks_from_sysfs(_sysfs(tmp_path / "c", 1734000, 76800000))["locked"] is False
    assert clocks_from_sysfs(str(tmp_path / "empty")) is None


def test_throttle_trip_points(tmp_path):
    # Synthetic thermal zones (the kernel's trip_point_* files, temperatures in m-deg C).
    root = fake_root(
        tmp_path,
        {
            "/sys/class/thermal/thermal_zone0/type": "CPU-therm\n",
            "/sys/class/thermal/thermal_zone0/trip_point_0_type": "critical\n",
            "/sys/class/thermal/thermal_zone0/trip_point_0_temp": "102000\n",
            "/sys/class/thermal/thermal_zone0/trip_point_1_type": "passive\n",
            "/sys/class/thermal/thermal_zone0/trip_point_1_temp": "97000\n",
            "/sys/class/thermal/thermal_zone1/type": "tj-thermal\n",
            "/sys/class/thermal/thermal_zone1/trip_point_0_type": "active\n",
            "/sys/class/thermal/thermal_zone1/trip_point_0_temp": "50000\n",
        },
    )
    assert throttle_trip_points_c(root) == {"cpu": 97.0}


def test_jetson_info_nano_without_tools(tmp_path):
    root = fake_root(
        tmp_path, {"/etc/nv_tegra_release": NANO_RELEASE, "/proc/device-tree/model": NANO_MODEL}
    )
    info = jetson_info(root, fake_runner({"dpkg-query": NOT_INSTALLED_DPKG}))
    assert info["model"] == "NVIDIA Jetson Nano Developer Kit"
    assert info["l4t"]["version"] == "32.7.6"
    assert info["jetpack"]["version"] == "4.6.6"
    assert info["power_mode"] is None and info["reasons"]["power_mode"] == "nvpmodel not found"
    assert info["clocks"] is None and "jetson_clocks not found" in info["reasons"]["clocks"]
    assert "jetpack" not in info["reasons"]


def test_jetson_info_tx2_with_recorded_tools(tmp_path):
    root = fake_root(tmp_path, {"/etc/nv_tegra_release": TX2_RELEASE})
    runner = fake_runner(
        {
            "dpkg-query": NOT_INSTALLED_DPKG,
            "nvpmodel": (0, NVPMODEL_XAVIER),
            "jetson_clocks": (0, JETSON_CLOCKS_TX2),
        }
    )
    info = require_jetson(root, runner)
    assert info["model"] is None and "model" in info["reasons"]
    assert info["jetpack"]["version"] == "4.5.1"
    assert info["power_mode"] == {"name": "MAXN", "id": None}
    assert info["clocks"]["locked"] is False and info["clocks"]["source"] == "jetson_clocks --show"


def test_jetson_info_agx_orin_r39_falls_back_to_sysfs_clocks(tmp_path):
    root = _sysfs(tmp_path, 1734000, 998400000)
    fake_root(
        tmp_path,
        {
            "/etc/nv_tegra_release": AGX_ORIN_R39_RELEASE,
            "/sys/firmware/devicetree/base/model": AGX_ORIN_MODEL,
        },
    )
    # jetson_clocks without root: exit status and message are illustrative, not recorded.
    runner = fake_runner(
        {"nvpmodel": (0, NVPMODEL_THOR), "jetson_clocks": (1, "Please run as root\n")}
    )
    info = jetson_info(root, runner)
    assert info["model"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert info["l4t"]["release"] == "R39.2.0"
    assert info["jetpack"] == {
        "version": "7.x",
        "approximate": True,
        "source": "L4T R39 family (dpkg-query not found; 39.2.0 not in table)",
    }
    assert info["power_mode"] == {"name": "MAXN", "id": 0}
    assert info["clocks"]["source"] == "sysfs" and info["clocks"]["locked"] is True
    assert info["reasons"] == {}
