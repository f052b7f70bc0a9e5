"""A small safetensors writer and reader (no `safetensors` package needed).

Format (https://github.com/huggingface/safetensors): 8 bytes little-endian
header length N, N bytes of JSON header, then the data section. The header
maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
(offsets relative to the data section) and may hold "__metadata__" (a
str -> str map). Tensors are contiguous, row-major, little-endian.

Supported dtypes: F32, BF16, F16 (what fla checkpoints use), plus F64 for
reading. Writing is deterministic: tensors in name order, header padded with
spaces to a multiple of 8 bytes (as the reference implementation does).

    write_safetensors(path, {"w": torch.ones(2, 3)}, dtype=torch.bfloat16)
    tensors, metadata = read_safetensors(path)
"""

import json
import struct

import numpy as np
import torch

# safetensors dtype name -> (torch dtype, bytes per element).
_DTYPES = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
}
_NAME_OF = {torch_dtype: name for name, (torch_dtype, _) in _DTYPES.items()}
_MAX_HEADER_BYTES = 100 * 1024 * 1024


def dtype_name(dtype):
    """The safetensors name ("F32", "BF16", ...) of a torch dtype."""
    if dtype not in _NAME_OF:
        raise ValueError(f"unsupported dtype {dtype}")
    return _NAME_OF[dtype]


def _to_bytes(tensor):
    """Raw little-endian bytes of a CPU tensor, row-major."""
    tensor = tensor.detach().to("cpu").contiguous()
    if tensor.dtype == torch.bfloat16:
        # numpy has no bfloat16: reinterpret the bits as int16.
        array = tensor.view(torch.int16).numpy().astype("<i2", copy=False)
    else:
        array = tensor.numpy()
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return array.tobytes()


def write_safetensors(path, tensors, dtype=None, metadata=None):
    """Writes `tensors` (name -> tensor) to `path`.

    `dtype` is None (keep each tensor's dtype), a torch dtype for all
    tensors, or a dict name -> torch dtype (names not in it keep theirs).
    Values are rounded to the target dtype with torch's round-to-nearest-even.
    """
    header = {}
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name]
        target = dtype.get(name, tensor.dtype) if isinstance(dtype, dict) else (
            dtype or tensor.dtype)
        data = _to_bytes(tensor.to(target))
        header[name] = {
            "dtype": dtype_name(target),
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for data in chunks:
            f.write(data)


def read_safetensors(path):
    """Reads `path` -> (dict name -> CPU tensor in its stored dtype, metadata).

    Validates the header: known dtypes, offsets that match the shapes and lie
    inside the data section without overlapping.
    """
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > min(_MAX_HEADER_BYTES, len(blob) - 8):
        raise ValueError(f"{path}: header length {header_len} is too large")
    header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    data = memoryview(blob)[8 + header_len:]
    metadata = header.pop("__metadata__", None) or {}

    tensors = {}
    spans = []
    for name, entry in header.items():
        if entry["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype "
                             f"{entry['dtype']}")
        torch_dtype, item_size = _DTYPES[entry["dtype"]]
        shape = [int(s) for s in entry["shape"]]
        begin, end = (int(o) for o in entry["data_offsets"])
        expected = item_size * int(np.prod(shape, dtype=np.int64))
        if not 0 <= begin <= end <= len(data) or end - begin != expected:
            raise ValueError(f"{path}: tensor {name}: bad data_offsets "
                             f"{[begin, end]} for shape {shape}")
        spans.append((begin, end, name))
        raw = bytes(data[begin:end])
        if torch_dtype == torch.bfloat16:
            array = np.frombuffer(raw, dtype="<i2").copy()
            tensor = torch.from_numpy(array).view(torch.bfloat16)
        else:
            np_dtype = {torch.float64: "<f8", torch.float32: "<f4",
                        torch.float16: "<f2"}[torch_dtype]
            tensor = torch.from_numpy(np.frombuffer(raw, dtype=np_dtype).copy())
        tensors[name] = tensor.reshape(shape)
    spans.sort()
    for (_, end_a, name_a), (begin_b, end_b, name_b) in zip(spans, spans[1:]):
        if begin_b < end_a and begin_b != end_b:
            raise ValueError(f"{path}: tensors {name_a} and {name_b} overlap")
    return tensors, metadata


def read_dtypes(path):
    """name -> safetensors dtype name, from the header only."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len).decode("utf-8"))
    header.pop("__metadata__", None)
    return {name: entry["dtype"] for name, entry in header.items()}
