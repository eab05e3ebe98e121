"""A fake ``tensorrt`` module and a fake CUDA runtime for tests on machines without a GPU.

Injected into the code under test (``build_engine(..., trt=fake)``, ``TrtRunner(..., trt=fake,
cuda=FakeCuda())``), never installed in ``sys.modules``. It models the subset of the TensorRT
10/11 Python API mind-edge uses, strictly enough to catch misuse:

* ``Builder`` / ``create_network(flags)`` / ``OnnxParser.parse`` build a network with one layer
  per ONNX node (named after the node, tensors named after the ONNX values, dtypes from ONNX
  shape inference) plus constant layers for initializers read by non-conv nodes, as the real
  parser does; setting ``layer.precision`` on a strongly typed network raises, as in TensorRT;
* version 11 lacks the weak-typing builder flags (``FP16``, ``OBEY_PRECISION_CONSTRAINTS``);
* ``build_serialized_network`` returns a "plan" = a JSON header (flags, profile, workspace, DLA)
  + the ONNX bytes it parsed; ``Runtime.deserialize_cuda_engine`` turns it into an engine that
  runs the ONNX graph with ONNX Runtime on the bytes of :class:`FakeCuda`'s "device" memory
  (int64 outputs come back as int32, to exercise the runner's dtype handling).

What this cannot show: that the real TensorRT accepts our graph, builds it, or computes the same
numbers. The ``needs_tensorrt`` tests do that where TensorRT and a GPU exist.
"""

from __future__ import annotations

import enum
import json
import types
from typing import Any

import numpy as np

from mind_edge.runtime.engine_fingerprint import GpuInfo
from mind_edge.runtime.trt_runner import CudaApi

PLAN_MAGIC = b"FAKETRTPLAN\n"
FAKE_GPU = GpuInfo("Fake Orin (nvgpu)", "8.7")


class DataType(enum.Enum):
    FLOAT = "float32"
    HALF = "float16"
    INT32 = "int32"
    INT64 = "int64"
    INT8 = "int8"
    UINT8 = "uint8"
    BOOL = "bool"


_ONNX_TO_DT = {
    1: DataType.FLOAT,
    10: DataType.HALF,
    6: DataType.INT32,
    7: DataType.INT64,
    3: DataType.INT8,
    9: DataType.BOOL,
    2: DataType.UINT8,
}


class FakeTensor:
    def __init__(self, name: str, dtype: DataType) -> None:
        self.name = name
        self.dtype = dtype


class FakeLayer:
    def __init__(self, network: FakeNetwork, name: str, type_: str, inputs, outputs) -> None:
        self._network = network
        self.name = name
        self.type = type_
        self._inputs = list(inputs)
        self._outputs = list(outputs)
        self._precision = None
        self.output_types: dict[int, DataType] = {}

    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))

    def get_input(self, i):
        return self._inputs[i]

    def get_output(self, i):
        return self._outputs[i]

    @property
    def precision(self):
        return self._precision

    @precision.setter
    def precision(self, value):
        if self._network.strongly_typed:
            raise RuntimeError("setPrecision is not allowed on a strongly typed network")
        self._precision = value

    def set_output_type(self, index: int, dtype) -> None:
        if self._network.strongly_typed:
            raise RuntimeError("setOutputType is not allowed on a strongly typed network")
        self.output_types[index] = dtype


class FakeNetwork:
    def __init__(self, flags: int, strongly_typed: bool) -> None:
        self.flags = flags
        self.strongly_typed = strongly_typed
        self.layers: list[FakeLayer] = []
        self.onnx_bytes: bytes | None = None

    num_layers = property(lambda self: len(self.layers))

    def get_layer(self, i):
        return self.layers[i]


class FakeParser:
    def __init__(self, network: FakeNetwork, logger) -> None:
        self.network = network
        self.errors: list[str] = []

    num_errors = property(lambda self: len(self.errors))

    def get_error(self, i):
        return self.errors[i]

    def parse(self, data: bytes) -> bool:
        import onnx

        try:
            model = onnx.load_from_string(bytes(data))
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception as exc:  # noqa: BLE001 - the fake reports like the real parser
            self.errors.append(f"In node -1 (parseGraph): INVALID_GRAPH: {exc}")
            return False
        g = inferred.graph
        dtypes = {
            v.name: _ONNX_TO_DT.get(v.type.tensor_type.elem_type, DataType.FLOAT)
            for v in list(g.value_info) + list(g.input) + list(g.output)
        }
        for init in g.initializer:
            dtypes[init.name] = _ONNX_TO_DT[init.data_type]
        tensors: dict[str, FakeTensor] = {}

        def tensor(name: str) -> FakeTensor:
            if name not in tensors:
                tensors[name] = FakeTensor(name, dtypes.get(name, DataType.FLOAT))
            return tensors[name]

        inits = {i.name for i in g.initializer}
        net = self.network
        for node in g.node:
            ins = []
            for k, name in enumerate(node.input):
                if name in inits and not (node.op_type == "Conv" and k > 0):
                    # weights read as tensors become constant layers (conv weights are layer weights)
                    if name not in tensors:
                        net.layers.append(FakeLayer(net, f"{name}_const", "CONSTANT", [], [tensor(name)]))
                    ins.append(tensor(name))
                elif name in inits:
                    continue
                else:
                    ins.append(tensor(name))
            net.layers.append(FakeLayer(net, node.name, node.op_type.upper(), ins, [tensor(o) for o in node.output]))
        net.onnx_bytes = bytes(data)
        return True


class FakeProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's keyword names
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class FakeTimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)

    def serialize(self) -> bytes:
        return b"TIMING:" + str(len(self.data)).encode()


class FakeConfig:
    def __init__(self, module) -> None:
        self.module = module
        self.flags: set = set()
        self.pools: dict = {}
        self.profiles: list[FakeProfile] = []
        self.default_device_type = module.DeviceType.GPU
        self.DLA_core = -1
        self.timing_cache: FakeTimingCache | None = None
        self.timing_cache_input: bytes | None = None

    def set_memory_pool_limit(self, pool, nbytes: int) -> None:
        self.pools[pool] = int(nbytes)

    def set_flag(self, flag) -> None:
        self.flags.add(flag)

    def add_optimization_profile(self, profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data: bytes):
        self.timing_cache_input = bytes(data)
        return FakeTimingCache(data)

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        self.timing_cache = cache
        return True

    def get_timing_cache(self):
        return self.timing_cache


class FakeBuilder:
    def __init__(self, module, logger) -> None:
        self.module = module
        self.num_DLA_cores = module._dla_cores
        self.networks: list[FakeNetwork] = []
        self.configs: list[FakeConfig] = []
        module._builders.append(self)

    def create_network(self, flags: int = 0) -> FakeNetwork:
        strong_flag = getattr(self.module.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        strong = self.module._major >= 11 or (strong_flag is not None and bool(flags & (1 << int(strong_flag))))
        net = FakeNetwork(flags, strong)
        self.networks.append(net)
        return net

    def create_builder_config(self) -> FakeConfig:
        cfg = FakeConfig(self.module)
        self.configs.append(cfg)
        return cfg

    def create_optimization_profile(self) -> FakeProfile:
        return FakeProfile()

    def build_serialized_network(self, network: FakeNetwork, config: FakeConfig):
        if self.module._fail_build or network.onnx_bytes is None:
            return None
        m = self.module
        header = {
            "version": m.__version__,
            "strongly_typed": network.strongly_typed,
            "fp16": m.BuilderFlag.FP16 in config.flags if hasattr(m.BuilderFlag, "FP16") else False,
            "int8": m.BuilderFlag.INT8 in config.flags if hasattr(m.BuilderFlag, "INT8") else False,
            "workspace": config.pools.get(m.MemoryPoolType.WORKSPACE),
            "dla": config.DLA_core if config.default_device_type == m.DeviceType.DLA else None,
            "profile": {k: [list(s) for s in v] for k, v in config.profiles[0].shapes.items()},
        }
        return PLAN_MAGIC + json.dumps(header).encode() + b"\n" + network.onnx_bytes


class FakeEngine:
    def __init__(self, module, header: dict, onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        self.module = module
        self.header = header
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.out_shapes = {o.name: list(o.shape) for o in self.session.get_outputs()}
        self.out_types = {o.name: o.type for o in self.session.get_outputs()}
        self.contexts: list[FakeContext] = []

    num_io_tensors = property(lambda self: len(self.inputs) + len(self.outputs))

    def get_tensor_name(self, i: int) -> str:
        return (self.inputs + self.outputs)[i]

    def get_tensor_mode(self, name: str):
        return self.module.TensorIOMode.INPUT if name in self.inputs else self.module.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str):
        if name in self.inputs:
            return DataType.FLOAT
        return DataType.INT32 if self.out_types[name] == "tensor(int64)" else DataType.FLOAT

    def get_tensor_profile_shape(self, name: str, profile_index: int):
        return [tuple(s) for s in self.header["profile"][name]]

    def create_execution_context(self):
        ctx = FakeContext(self)
        self.contexts.append(ctx)
        return ctx


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}
        self.executions = 0
        self.batches: list[int] = []

    def set_input_shape(self, name: str, shape) -> bool:
        lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(lo) or any(not (a <= s <= b) for a, s, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str):
        if name in self.engine.inputs:
            return self.shapes[name]
        batch = self.shapes[self.engine.inputs[0]][0]
        return tuple(batch if not isinstance(d, int) or d < 0 else d for d in self.engine.out_shapes[name])

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        cuda: FakeCuda = self.engine.module._cuda
        name = self.engine.inputs[0]
        shape = self.shapes[name]
        n = int(np.prod(shape)) * 4
        x = np.frombuffer(bytes(cuda.memory[self.addresses[name]][:n]), dtype=np.float32).reshape(shape)
        outs = self.engine.session.run(self.engine.outputs, {name: x})
        for oname, value in zip(self.engine.outputs, outs):
            dt = np.int32 if value.dtype == np.int64 else np.float32
            data = np.ascontiguousarray(value.astype(dt)).tobytes()
            buf = cuda.memory[self.addresses[oname]]
            if len(data) > len(buf):
                raise RuntimeError(f"output {oname} overflows its device buffer ({len(data)} > {len(buf)} bytes)")
            buf[: len(data)] = data
        self.executions += 1
        self.batches.append(shape[0])
        return True


class FakeRuntime:
    def __init__(self, module, logger) -> None:
        self.module = module

    def deserialize_cuda_engine(self, plan: bytes):
        plan = bytes(plan)
        if not plan.startswith(PLAN_MAGIC):
            return None
        header, onnx_bytes = plan[len(PLAN_MAGIC) :].split(b"\n", 1)
        header = json.loads(header)
        if header["version"] != self.module.__version__:
            return None  # like TensorRT: a plan of another version does not deserialize
        return FakeEngine(self.module, header, onnx_bytes)


def make_plan(
    onnx_bytes: bytes,
    *,
    version: str = "10.3.0",
    profile=((1, 3, 13, 9), (4, 3, 13, 9), (8, 3, 13, 9)),
    input_name: str = "image",
) -> bytes:
    """A plan the fake runtime accepts, without going through the fake builder."""
    header = {
        "version": version,
        "strongly_typed": False,
        "fp16": False,
        "workspace": 256 << 20,
        "dla": None,
        "profile": {input_name: [list(s) for s in profile]},
    }
    return PLAN_MAGIC + json.dumps(header).encode() + b"\n" + onnx_bytes


def fake_tensorrt(
    version: str = "10.3.0", *, dla_cores: int = 0, fail_build: bool = False, cuda: FakeCuda | None = None
) -> types.ModuleType:
    """A fresh fake ``tensorrt`` module of ``version`` (10.x: weak + strong typing; 11.x: strong only)."""
    m = types.ModuleType("tensorrt")
    m.__version__ = version
    major = int(version.split(".")[0])
    m._major = major
    m._dla_cores = dla_cores
    m._fail_build = fail_build
    m._builders = []
    m._cuda = cuda
    m.DataType = DataType
    m.float32, m.float16, m.int32, m.int64, m.int8, m.bool = (
        DataType.FLOAT,
        DataType.HALF,
        DataType.INT32,
        DataType.INT64,
        DataType.INT8,
        DataType.BOOL,
    )
    m.nptype = lambda dt: np.dtype(dt.value).type

    class Logger:
        VERBOSE, INFO, WARNING, ERROR = 0, 1, 2, 3

        def __init__(self, severity=2) -> None:
            self.severity = severity

    m.Logger = Logger
    m.Builder = lambda logger: FakeBuilder(m, logger)
    m.OnnxParser = FakeParser
    m.Runtime = lambda logger: FakeRuntime(m, logger)
    flags = {"STRONGLY_TYPED": 5} if major >= 10 else {"EXPLICIT_BATCH": 0}
    m.NetworkDefinitionCreationFlag = types.SimpleNamespace(**flags)
    m.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    builder_flags = {"GPU_FALLBACK": "GPU_FALLBACK", "TF32": "TF32"}
    if major < 11:
        builder_flags.update(FP16="FP16", INT8="INT8", OBEY_PRECISION_CONSTRAINTS="OBEY_PRECISION_CONSTRAINTS")
    m.BuilderFlag = types.SimpleNamespace(**builder_flags)
    m.DeviceType = types.SimpleNamespace(GPU="GPU", DLA="DLA")
    m.LayerType = types.SimpleNamespace(CONSTANT="CONSTANT")
    m.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT", NONE="NONE")
    return m


class FakeCuda(CudaApi):
    """Host bytearrays standing in for device memory; counts every call."""

    name = "fake-cuda"

    def __init__(self) -> None:
        self.memory: dict[int, bytearray] = {}
        self.streams: set[int] = set()
        self._next = 0x1000
        self.copies = 0

    def malloc(self, nbytes: int) -> int:
        ptr = self._next
        self._next += max(int(nbytes), 1) + 256
        self.memory[ptr] = bytearray(max(int(nbytes), 1))
        return ptr

    def free(self, ptr: int) -> None:
        del self.memory[ptr]

    def stream_create(self) -> int:
        s = 0x77 + len(self.streams)
        self.streams.add(s)
        return s

    def stream_destroy(self, stream: int) -> None:
        self.streams.remove(stream)

    def stream_synchronize(self, stream: int) -> None:
        assert stream in self.streams

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        data = np.ascontiguousarray(src).tobytes()
        buf = self.memory[dst]
        assert len(data) <= len(buf), f"host->device copy of {len(data)} bytes into a {len(buf)}-byte buffer"
        buf[: len(data)] = data
        self.copies += 1

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        buf = self.memory[src]
        assert dst.nbytes <= len(buf)
        dst.reshape(-1).view(np.uint8)[:] = np.frombuffer(bytes(buf[: dst.nbytes]), dtype=np.uint8)
        self.copies += 1


def fake_stack(version: str = "10.3.0", **kw: Any) -> tuple[types.ModuleType, FakeCuda]:
    cuda = FakeCuda()
    return fake_tensorrt(version, cuda=cuda, **kw), cuda
