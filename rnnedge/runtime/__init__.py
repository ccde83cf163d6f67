"""The torch-free streaming runtime: what runs on the device.

    import rnnedge.runtime as rt
    model = rt.load("bundle/")                # verifies manifest + sha256; auto: streams on LiteRT, pools on ORT
    model = rt.load("bundle/", verify_key=key)  # ... and requires the signature (rnnedge.bundle.sign_bundle)
    stream = model.stream()                   # or model.stream(resume="state.snap", nan_policy="hold")
    y = stream.step(sample)                   # (channels,) raw sensor units -> (outputs,)
    ys = stream.feed(chunk)                   # (T, channels) -> (T, outputs)
    stream.save("state.snap"); stream.reset()
    pool = model.pool(capacity=1024)          # many streams, one backend call per tick (submit: bounded queues)
    pool.add("bed-7"); pool.step({"bed-7": sample})

Imports numpy, msgspec (the manifest schema) and the one backend it uses, never torch.
"""

from rnnedge.runtime.model import BACKENDS, Model, load
from rnnedge.runtime.pool import Pool
from rnnedge.runtime.stream import Stream

__all__ = ["BACKENDS", "Model", "Pool", "Stream", "load"]
