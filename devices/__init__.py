"""mind_edge.devices: device profiles, detection and Jetson telemetry.

Torch-free by design (a Jetson install needs no PyTorch): ``import mind_edge.devices`` pulls in
the standard library only. The CLI sub-app lives in :mod:`mind_edge.devices.cli` and is not
imported here.
"""

from mind_edge.devices.errors import DeviceError, ProfileError, TegrastatsParseError
from mind_edge.devices.profiles import (
    Defaults,
    Detection,
    DeviceProfile,
    GpuSpec,
    PowerMode,
    detect,
    get_profile,
    list_profiles,
    load_profile_file,
    load_profiles,
    parse_nv_tegra_release,
)
from mind_edge.devices.tegrastats import (
    Rail,
    TegrastatsMonitor,
    TegrastatsSample,
    TelemetryResult,
    find_tegrastats,
    parse_line,
    parse_lines,
)

__all__ = [
    "Defaults",
    "Detection",
    "DeviceError",
    "DeviceProfile",
    "GpuSpec",
    "PowerMode",
    "ProfileError",
    "Rail",
    "TegrastatsMonitor",
    "TegrastatsParseError",
    "TegrastatsSample",
    "TelemetryResult",
    "detect",
    "find_tegrastats",
    "get_profile",
    "list_profiles",
    "load_profile_file",
    "load_profiles",
    "parse_line",
    "parse_lines",
    "parse_nv_tegra_release",
]
