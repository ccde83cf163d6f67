"""Cortex-M (and Ethos-U) profiles, and whether a bundle's integer-only file fits one.

A bundle fits when one of its integer-only files (a8w8, a16w8; exported with an MCU build) has its model array
within the target's flash budget and TFLite Micro's tensor arena plus the stream's state buffers within its RAM
budget. Budgets leave room for the application: the flash and RAM a target has, less a reserve (RESERVE) for the
firmware, TFLite Micro's own code (~100 KB with these kernels) and stacks. The arena in the manifest was measured on
a 64-bit host, an upper bound for these 32-bit cores. Before a model exists (`rnnedge tune`), its step time on a
profile's core is estimated from its shape (`step_instructions`) and held to the same share of the sample period.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnnedge.bundle import Manifest, ModelFile

RESERVE = 0.5  # share of flash, RAM and the sample period left to the firmware, TFLite Micro and stacks
STATE_BUFFERS = 2  # integer state in and out
# Instructions of one step of the generated a16w8 C (export/cgen.py) counted under QEMU on the Cortex-M4F
# (`rnnedge mcu`), fitted to LSTMs 2x16, 3x32, 2x64 and 1x128 on 6 input channels (56,228 to 426,146 a step; the
# fit within 1.5 % of each): the matrix products cost per weight, the int16 gate activations and the cell's
# element-wise arithmetic per gate element. GRUs take a little more (2x16: 44,525 counted, 41,776 estimated;
# 1x32: 48,988 and 46,393). tests/devices/test_cortexm.py holds the fit to what QEMU counts (LSTMs and a GRU).
INSTRUCTIONS_PER_WEIGHT = 3.7
INSTRUCTIONS_PER_GATE_ELEMENT = 320


@dataclass(frozen=True)
class McuProfile:
    key: str
    name: str
    ram_bytes: int
    flash_bytes: int
    precision: str  # the integer variant to prefer
    why: str
    clock_hz: float = 64e6  # the slowest core clock among the parts named (one instruction a cycle assumed)

    @property
    def budgets(self) -> tuple[int, int]:
        """(flash, RAM) bytes left to the model after the reserve."""
        return int(self.flash_bytes * (1 - RESERVE)), int(self.ram_bytes * (1 - RESERVE))

    def step_ms(self, instructions: float) -> float:
        """Milliseconds a step of that many instructions takes on this core (one instruction a cycle)."""
        return instructions / self.clock_hz * 1e3

    def step_budget_ms(self, sample_rate_hz: float) -> float:
        """Milliseconds of the sample period left to a model's step after the reserve."""
        return (1 - RESERVE) * 1e3 / sample_rate_hz


def step_instructions(params: int, gate_elements: int) -> float:
    """Instructions one stream step of a model with `params` weights and biases and `gate_elements` gate outputs
    (gates x hidden x layers x directions) takes in the generated C on a Cortex-M (see INSTRUCTIONS_PER_WEIGHT)."""
    return INSTRUCTIONS_PER_WEIGHT * params + INSTRUCTIONS_PER_GATE_ELEMENT * gate_elements


MCU_PROFILES = (
    McuProfile("cortex-m4f", "Cortex-M4F (e.g. STM32F4, nRF52840: 256 KB RAM, 1 MB flash)", 256 << 10, 1 << 20,
               "a16w8", "CMSIS-NN has int16x8 kernels; the LSTM's cell state needs 16 bits (a8w8 loses 3.3 points "
                        "on the default tagger)", 64e6),
    McuProfile("cortex-m7", "Cortex-M7 (e.g. STM32H7, i.MX RT1060: 1 MB RAM, 2 MB flash)", 1 << 20, 2 << 20,
               "a16w8", "ample RAM and flash: the same a16w8 file, faster", 480e6),
    McuProfile("cortex-m55-ethos-u55", "Cortex-M55 + Ethos-U55 (e.g. Alif E3: 4 MB RAM, 4 MB flash)", 4 << 20,
               4 << 20, "a16w8", "the Ethos-U55 runs int8 and int16x8 graphs once compiled with Vela; TFLite "
                                 "Micro runs what Vela leaves on the M55", 160e6),
)


@dataclass(frozen=True)
class Fit:
    profile: McuProfile
    file: ModelFile | None  # the integer-only file that fits (None: none does)
    flash_budget: int
    ram_budget: int
    ram_needed: int | None
    reason: str


def fit(manifest: Manifest, profile: McuProfile) -> Fit:
    """Does the bundle run on this target? The profile's precision first, then the other integer file."""
    flash_budget, ram_budget = profile.budgets
    candidates = sorted((f for f in manifest.files if f.mcu is not None),
                        key=lambda f: f.precision != profile.precision)
    if not candidates:
        return Fit(profile, None, flash_budget, ram_budget, None,
                   "no integer-only file with an MCU build (export with --precisions ...,a16w8)")
    reasons = []
    for f in candidates:
        state_bytes = STATE_BUFFERS * manifest.state.size * (2 if f.quantization["state"].dtype == "int16" else 1)
        ram = f.mcu.arena_bytes + state_bytes
        if f.mcu.flash_bytes <= flash_budget and ram <= ram_budget:
            return Fit(profile, f, flash_budget, ram_budget, ram,
                       f"{f.precision}: flash {f.mcu.flash_bytes / 1024:.1f} of {flash_budget / 1024:.0f} KB, RAM "
                       f"{ram / 1024:.1f} of {ram_budget / 1024:.0f} KB (arena + state)")
        reasons.append(f"{f.precision} needs flash {f.mcu.flash_bytes / 1024:.1f} KB and RAM {ram / 1024:.1f} KB")
    budget = f"{flash_budget / 1024:.0f} KB flash / {ram_budget / 1024:.0f} KB RAM"
    return Fit(profile, None, flash_budget, ram_budget, None, f"too big for {budget}: " + "; ".join(reasons))
