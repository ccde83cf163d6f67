"""Devices stage: what a machine is and what to ship to it (`info`, `profiles`), how every variant of a
bundle performs on it (`bench`, `probe`, `report`), and an emulated aarch64 board to prove ARM (`emulate`).
Nothing here imports torch unless the torch comparison row asks for it."""
