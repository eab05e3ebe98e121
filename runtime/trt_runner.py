"""Native TensorRT runner (``--backend trt``) behind the same :class:`Runner` interface as ONNX Runtime.

``TrtRunner(bundle_dir)`` picks the engine of the bundle that fits this machine
(:func:`~mind_edge.runtime.engine_fingerprint.select_engine`: same TensorRT version, GPU and
compute capability, same ``model.onnx``; anything else is refused with both fingerprints named),
deserializes it and runs it with the TensorRT 10 I/O tensor API::

    engine.num_io_tensors / get_tensor_name / get_tensor_mode / get_tensor_dtype
    context.set_input_shape(name, shape); context.set_tensor_address(name, device_ptr)
    context.execute_async_v3(stream)

Device memory and the stream come from a small CUDA runtime wrapper (:func:`cuda_api`):
`cuda-python` (``cuda.bindings.runtime``, or ``cuda.cudart`` in older releases) when it is
installed, otherwise ``libcudart`` through ctypes (JetPack ships it; no extra package). Buffers
are allocated once for the largest batch of the engine's optimization profile; larger batches
are split, smaller ones than the profile's minimum (static DLA engines) are zero-padded. Host
buffers are ordinary (pageable) numpy arrays.

``tensorrt`` and the CUDA bindings are imported when the runner is activated, never at import
time; both can be injected (``trt=``, ``cuda=``), which is how the tests run this code with a
fake TensorRT module on machines without a GPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.engine_fingerprint import (
    EngineError,
    EngineRecord,
    GpuInfo,
    _cudart,
    import_tensorrt,
    machine_info,
    select_engine,
    trt_logger,
)
from mind_edge.runtime.errors import BackendError
from mind_edge.runtime.graph import CONTRACT
from mind_edge.runtime.runners import Runner

log = logging.getLogger(__name__)

HOST_TO_DEVICE, DEVICE_TO_HOST = 1, 2  # cudaMemcpyKind values


# ----------------------------------------------------------------------------- CUDA runtime wrappers


class CudaApi:
    """The few CUDA runtime calls the runner needs; device pointers and streams are ints."""

    name = "cuda"

    def malloc(self, nbytes: int) -> int:
        raise NotImplementedError

    def free(self, ptr: int) -> None:
        raise NotImplementedError

    def stream_create(self) -> int:
        raise NotImplementedError

    def stream_destroy(self, stream: int) -> None:
        raise NotImplementedError

    def stream_synchronize(self, stream: int) -> None:
        raise NotImplementedError

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        raise NotImplementedError

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        raise NotImplementedError


class CudaPythonApi(CudaApi):
    """NVIDIA's cuda-python runtime bindings (every call returns ``(err, *values)``)."""

    name = "cuda-python"

    def __init__(self, cudart=None) -> None:
        if cudart is None:
            cudart = _cudart()
        self.rt = cudart
        self._streams: dict[int, Any] = {}

    def _check(self, result, what: str):
        err, rest = result[0], result[1:]
        if err != self.rt.cudaError_t.cudaSuccess:
            raise BackendError(f"CUDA {what} failed: {err}")
        return rest[0] if len(rest) == 1 else rest

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(1, int(nbytes))), f"cudaMalloc({nbytes})"))

    def free(self, ptr: int) -> None:
        self._check(self.rt.cudaFree(ptr), "cudaFree")

    def stream_create(self) -> int:
        stream = self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")
        handle = int(stream)
        self._streams[handle] = stream
        return handle

    def stream_destroy(self, stream: int) -> None:
        self._check(self.rt.cudaStreamDestroy(self._streams.pop(stream, stream)), "cudaStreamDestroy")

    def stream_synchronize(self, stream: int) -> None:
        self._check(self.rt.cudaStreamSynchronize(self._streams.get(stream, stream)), "cudaStreamSynchronize")

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(
            self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, self._streams.get(stream, stream)),
            "cudaMemcpyAsync host->device",
        )

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(
            self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, self._streams.get(stream, stream)),
            "cudaMemcpyAsync device->host",
        )


class CtypesCudartApi(CudaApi):
    """``libcudart`` through ctypes: the fallback when cuda-python is not installed."""

    name = "libcudart (ctypes)"
    CANDIDATES = ("libcudart.so", "libcudart.so.12", "libcudart.so.11.0", "/usr/local/cuda/lib64/libcudart.so")

    def __init__(self, lib=None) -> None:
        if lib is None:
            names = [n for n in (ctypes.util.find_library("cudart"),) if n] + list(self.CANDIDATES)
            errors = []
            for n in names:
                try:
                    lib = ctypes.CDLL(n)
                    break
                except OSError as exc:
                    errors.append(f"{n}: {exc}")
            if lib is None:
                raise BackendError(
                    "the TensorRT runner needs the CUDA runtime: neither cuda-python (pip install cuda-python) nor "
                    f"libcudart could be loaded ({'; '.join(errors[:3])})"
                )
        self.lib = lib
        self.lib.cudaGetErrorString.restype = ctypes.c_char_p

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            msg = self.lib.cudaGetErrorString(rc)
            raise BackendError(f"CUDA {what} failed: error {rc} ({msg.decode() if msg else 'unknown'})")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        size = ctypes.c_size_t(max(1, int(nbytes)))
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), size), f"cudaMalloc({nbytes})")
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        self._check(self.lib.cudaFree(ctypes.c_void_p(ptr)), "cudaFree")

    def stream_create(self) -> int:
        s = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(s)), "cudaStreamCreate")
        return int(s.value or 0)

    def stream_destroy(self, stream: int) -> None:
        self._check(self.lib.cudaStreamDestroy(ctypes.c_void_p(stream)), "cudaStreamDestroy")

    def stream_synchronize(self, stream: int) -> None:
        self._check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")

    def _copy(self, dst: int, src: int, n: int, kind: int, stream: int, what: str) -> None:
        self._check(
            self.lib.cudaMemcpyAsync(
                ctypes.c_void_p(dst),
                ctypes.c_void_p(src),
                ctypes.c_size_t(n),
                ctypes.c_int(kind),
                ctypes.c_void_p(stream),
            ),
            what,
        )

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        self._copy(dst, src.ctypes.data, src.nbytes, HOST_TO_DEVICE, stream, "cudaMemcpyAsync host->device")

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        self._copy(dst.ctypes.data, src, dst.nbytes, DEVICE_TO_HOST, stream, "cudaMemcpyAsync device->host")


def cuda_api() -> CudaApi:
    """cuda-python if importable, else libcudart through ctypes."""
    try:
        return CudaPythonApi()
    except ImportError:
        log.debug("cuda-python is not installed; using libcudart through ctypes")
        return CtypesCudartApi()


# ----------------------------------------------------------------------------- runner


def _np_dtype(trt, dtype) -> np.dtype:
    try:
        return np.dtype(trt.nptype(dtype))
    except (TypeError, KeyError) as exc:
        raise BackendError(f"the engine uses the TensorRT type {dtype}, which has no numpy equivalent") from exc


_CONTRACT_DTYPES = {o.name: np.dtype(o.dtype) for o in CONTRACT.outputs}


class TrtRunner(Runner):
    """Run the bundle's TensorRT engine built for this machine (see the module docstring)."""

    name = "trt"

    def __init__(
        self,
        bundle_dir: str | os.PathLike,
        *,
        precision: str | None = None,
        dla_core: int | None | str = "any",
        trt: Any = None,
        cuda: CudaApi | None = None,
        gpu: GpuInfo | Callable[[], GpuInfo] | None = None,
    ) -> None:
        super().__init__()
        path = Path(bundle_dir)
        self.bundle_dir = path.parent if path.is_file() else path
        self.precision = precision
        self.dla_core = dla_core
        self._trt, self._cuda, self._gpu = trt, cuda, gpu
        self.record: EngineRecord | None = None
        self.providers_used: list[str] = []
        self.output_names: list[str] = []
        self._reset()

    def _reset(self) -> None:
        self.engine = self.context = self.runtime = None
        self.stream: int | None = None
        self.buffers: dict[str, int] = {}
        self.input_name = ""
        self.input_dtype = np.dtype(np.float32)
        self.out_dtypes: dict[str, np.dtype] = {}
        self.min_batch = self.max_batch = 1

    def _activate(self) -> None:
        trt = self._trt if self._trt is not None else import_tensorrt("running a bundle with TensorRT (--backend trt)")
        bundle = Bundle.load(self.bundle_dir, verify=False)  # Runtime verified it; we need model.onnx's sha256
        machine = machine_info(trt, self._gpu)
        rec = select_engine(
            self.bundle_dir, machine, bundle.model_sha256, precision=self.precision, dla_core=self.dla_core
        )
        plan = (self.bundle_dir / rec.file).read_bytes()
        self.runtime = trt.Runtime(trt_logger(trt))
        engine = self.runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise EngineError(
                f"TensorRT {machine.tensorrt_version} could not deserialize {self.bundle_dir / rec.file} although its "
                f"fingerprint fits this machine; rebuild it with: mind-edge engine build {self.bundle_dir} --force"
            )
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"TensorRT could not create an execution context for {rec.file} (out of GPU memory?)")
        cuda = self._cuda if self._cuda is not None else cuda_api()
        self.cuda = cuda
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(name)
        if len(inputs) != 1:
            raise EngineError(f"engine {rec.file} has inputs {inputs}; a mind-edge engine has exactly one (image)")
        self.input_name = inputs[0]
        self.output_names = outputs
        self.input_dtype = _np_dtype(trt, engine.get_tensor_dtype(self.input_name))
        lo, _, hi = (tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(self.input_name, 0))
        self.min_batch, self.max_batch = lo[0], hi[0]
        self.image_shape = hi[1:]
        try:
            self.stream = cuda.stream_create()
            # one device buffer per I/O tensor, sized for the largest batch of the profile
            if not self.context.set_input_shape(self.input_name, hi):
                raise BackendError(f"TensorRT refused the input shape {list(hi)} of its own profile")
            for name in [self.input_name] + outputs:
                shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise EngineError(f"engine {rec.file}: output {name} has a data-dependent shape {list(shape)}")
                dtype = self.input_dtype if name == self.input_name else _np_dtype(trt, engine.get_tensor_dtype(name))
                if name != self.input_name:
                    self.out_dtypes[name] = dtype
                self.buffers[name] = cuda.malloc(int(np.prod(shape)) * dtype.itemsize)
                if not self.context.set_tensor_address(name, self.buffers[name]):
                    raise BackendError(f"TensorRT refused the device address of tensor {name}")
        except BaseException:
            self._release()
            raise
        self.record = rec
        self.providers_used = [
            f"TensorRT {machine.tensorrt_version} ({rec.fingerprint.precision}, {rec.file}, {cuda.name})"
        ]
        log.info("TensorRT engine %s on %s (batch %d..%d)", rec.file, machine.gpu_name, self.min_batch, self.max_batch)

    def _release(self) -> None:
        cuda = getattr(self, "cuda", None)
        if cuda is not None:
            for ptr in self.buffers.values():
                try:
                    cuda.free(ptr)
                except BackendError as exc:  # pragma: no cover - depends on the driver
                    log.warning("%s", exc)
            if self.stream is not None:
                try:
                    cuda.stream_destroy(self.stream)
                except BackendError as exc:  # pragma: no cover
                    log.warning("%s", exc)
        self._reset()

    def _deactivate(self) -> None:
        self._release()

    def _run_chunk(self, x: np.ndarray) -> dict[str, np.ndarray]:
        n = x.shape[0]
        if n < self.min_batch:  # static-batch engines (DLA): pad with zeros, drop the padding afterwards
            x = np.concatenate([x, np.zeros((self.min_batch - n,) + x.shape[1:], dtype=x.dtype)])
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        if not self.context.set_input_shape(self.input_name, tuple(x.shape)):
            raise BackendError(
                f"TensorRT refused the input shape {list(x.shape)} (profile batch "
                f"{self.min_batch}..{self.max_batch}, image {list(self.image_shape)})"
            )
        self.cuda.memcpy_htod_async(self.buffers[self.input_name], x, self.stream)
        if not self.context.execute_async_v3(self.stream):
            raise BackendError(f"TensorRT failed to run {self.record.file if self.record else 'the engine'}")
        outs = {}
        for name in self.output_names:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            host = np.empty(shape, dtype=self.out_dtypes[name])
            self.cuda.memcpy_dtoh_async(host, self.buffers[name], self.stream)
            outs[name] = host
        self.cuda.stream_synchronize(self.stream)
        return {k: v[:n] for k, v in outs.items()}

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.input_name not in feed:
            raise BackendError(f"the engine's input is {self.input_name!r}, got {sorted(feed)}")
        x = np.asarray(feed[self.input_name])
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            shape = ", ".join(map(str, self.image_shape))
            raise BackendError(f"the engine takes [B, {shape}] inputs, got {list(x.shape)}")
        parts = [self._run_chunk(x[i : i + self.max_batch]) for i in range(0, max(1, x.shape[0]), self.max_batch)]
        out = {k: np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k] for k in self.output_names}
        return {k: v.astype(_CONTRACT_DTYPES[k], copy=False) if k in _CONTRACT_DTYPES else v for k, v in out.items()}


__all__ = ["TrtRunner", "CudaApi", "CudaPythonApi", "CtypesCudartApi", "cuda_api"]
