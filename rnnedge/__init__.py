"""rnnedge: train recurrent models on sensor streams, export them, and stream them on edge devices.

Stages, in the order an artifact flows through them:
data -> training -> checkpoint -> export (+quantize, verify) -> bundle -> runtime -> devices -> apps.
Importing this package imports nothing heavy; each stage is imported on its own.
"""

__version__ = "0.1.0"
