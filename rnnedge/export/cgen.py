"""An integer-only stream file (a16w8: int16 activations and state, int8 weights) as one plain C99 library: the
weights and fixed-point constants as `const` arrays, one `<prefix>_step(state, x, y)` with the state owned by the
caller, no dynamic memory, no interpreter, no floating point in the step.

The arithmetic is TFLite Micro's reference kernels' for the same file (tensorflow/lite/kernels/internal/reference:
FULLY_CONNECTED per channel with int64 accumulators, ADD/SUB with a 15-bit left shift, MUL, QUANTIZE, the int16
LOGISTIC/TANH lookup table), and so are the constants: every multiplier and shift is derived from the file's float
scales the way each kernel's Prepare derives it (QuantizeMultiplier, CheckedLog2, the tanh/logistic rescale), so
the C computes the same integers as TFLite Micro, call by call. RESHAPE aliases, SLICE and CONCATENATION copy.
Anything else in a graph is refused with its name, before any C is written.

The state crosses calls in the file's `state` quantization: the step requantizes `state_out` into it with
TFLite Micro's Requantize (rnnedge.runtime.fixed_point.carry_state is the same rule in numpy, for a host that
drives TFLite Micro)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rnnedge.errors import BundleError
from rnnedge.runtime.fixed_point import carry_params, quantize_multiplier, round_away


def checked_log2(x: float) -> tuple[bool, int]:
    """CheckedLog2, in float32 as TFLite computes it: (is a power of two, rounded log2)."""
    x32 = np.float32(x)
    log2 = np.float32(np.log(x32)) * np.float32(np.float32(1.0) / np.float32(np.log(np.float32(2.0))))
    rounded = np.float32(round_away(float(log2)))
    return bool(abs(np.float32(log2 - rounded)) < np.float32(1e-3)), int(rounded)


def lut_rescale(scale: float, allowed_shifts: tuple[int, ...]) -> tuple[int, int]:
    """The int16 LOGISTIC/TANH Prepare: (input_multiplier, input_left_shift) taking the input to the lookup
    table's 1/(3*4096) scale; multiplier 0 means a power-of-two scale the kernel handles by shift."""
    pot, log2 = checked_log2(scale)
    left_shift = (15 - 3) + log2
    if pot and left_shift in allowed_shifts:
        return 0, left_shift
    multiplier, left_shift = float(np.float32(scale)) * 4096.0 * 3.0, 0
    while multiplier <= 32767.0 / 2.0 and left_shift <= 30:
        left_shift += 1
        multiplier *= 2.0
    return int(multiplier), left_shift


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # "int8", "int16", "int32", "int64"
    scales: list[float]
    zero_point: int
    data: np.ndarray | None  # constants

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def scale(self) -> float:
        return self.scales[0]


@dataclass
class Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class Graph:
    tensors: dict[int, Tensor]
    ops: list[Op]
    inputs: list[int]  # x, state
    outputs: list[int]  # y, state_out


DTYPES = {"INT8": ("int8", np.int8), "INT16": ("int16", np.int16), "INT32": ("int32", np.int32),
          "INT64": ("int64", np.int64)}
SUPPORTED = {"FULLY_CONNECTED", "ADD", "SUB", "MUL", "LOGISTIC", "TANH", "QUANTIZE", "RESHAPE", "SLICE",
             "CONCATENATION"}


def read_graph(model: bytes, where: str) -> Graph:
    """The file's one subgraph as plain data, refusing what the generator does not compute."""
    from tflite_micro.python.tflite_micro import runtime

    fb = runtime.schema_fb
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    obj = runtime.convert_bytearray_to_object(bytearray(model))
    if len(obj.subgraphs) != 1:
        raise BundleError(f"{where}: {len(obj.subgraphs)} subgraphs; the C generator takes one")
    g = obj.subgraphs[0]
    tensors = {}
    for i, t in enumerate(g.tensors):
        kind = types[t.type]
        if kind not in DTYPES:
            raise BundleError(f"{where}: tensor {i} is {kind}; the C generator computes integer-only files "
                              "(export --precisions a16w8)")
        q = t.quantization
        scales = [] if q is None or q.scale is None else [float(s) for s in q.scale]
        zero = 0 if q is None or q.zeroPoint is None or not len(q.zeroPoint) else int(q.zeroPoint[0])
        raw = obj.buffers[t.buffer].data if t.buffer < len(obj.buffers) else None
        data = None
        if raw is not None and len(raw):
            data = np.frombuffer(bytes(bytearray(raw)), DTYPES[kind][1]).reshape(tuple(int(n) for n in t.shape))
        tensors[i] = Tensor(i, (t.name or b"").decode(), tuple(int(n) for n in t.shape), DTYPES[kind][0],
                            scales, zero, data)
    ops = []
    for op in g.operators:
        kind = names[runtime.get_builtin_code_from_operator_code(obj.operatorCodes[op.opcodeIndex])]
        if kind not in SUPPORTED:
            raise BundleError(f"{where}: operator {kind} is not one the C generator computes "
                              f"({', '.join(sorted(SUPPORTED))})")
        options = vars(op.builtinOptions) if op.builtinOptions is not None else {}
        if options.get("fusedActivationFunction", 0) != 0:
            raise BundleError(f"{where}: {kind} with a fused activation; the C generator computes none")
        ops.append(Op(kind, [int(i) for i in op.inputs], [int(i) for i in op.outputs], options))
    return Graph(tensors, ops, [int(i) for i in g.inputs], [int(i) for i in g.outputs])


KERNELS = {  # emitted only where the graph uses them (a C compiler warns of unused static functions)
    "base": r"""static int32_t srdhm(int32_t a, int32_t b) { /* SaturatingRoundingDoublingHighMul */
  int64_t ab;
  int32_t nudge;
  if (a == b && a == INT32_MIN) return INT32_MAX;
  ab = (int64_t)a * (int64_t)b;
  nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}
static int32_t rdbpot(int32_t x, int exponent) { /* RoundingDivideByPOT */
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}
static int32_t mbqm(int32_t x, int32_t multiplier, int shift) { /* MultiplyByQuantizedMultiplier, int32 */
  const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
  return rdbpot(srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}
""",
    "mbqm64": r"""static int32_t mbqm64(int64_t x, int32_t multiplier, int shift) { /* the int64 overload */
  const int32_t reduced = multiplier < 0x7FFF0000 ? ((multiplier + (1 << 15)) >> 16) : 0x7FFF;
  const int total_shift = 15 - shift;
  x = x * (int64_t)reduced + ((int64_t)1 << (total_shift - 1));
  return (int32_t)(x >> total_shift);
}
""",
    "clamp": r"""static int16_t clamp16(int32_t v) { return (int16_t)(v < -32768 ? -32768 : v > 32767 ? 32767 : v); }

""",
    "fc": r"""static void fc_s16(const int16_t *in, int depth, const int8_t *w, const int64_t *bias, int outs,
                   const int32_t *mult, const int8_t *shift, int16_t *out) {
  int o, d, end;
  for (o = 0; o < outs; ++o) {
    int64_t acc = 0;
    const int8_t *row = w + (long)o * depth;
    for (d = 0; d < depth; d = end) { /* int32 partial sums: 512 products of int8 x int16 stay below 2^31 */
      int32_t part = 0;
      end = d + 512 < depth ? d + 512 : depth;
#if defined(__ARM_FEATURE_DSP)
      for (; d + 4 <= end; d += 4) { /* Cortex-M DSP: two 16x16 products per SMLAD, as CMSIS-NN pairs them */
        uint32_t w4, i01, i23;
        memcpy(&w4, row + d, 4);
        memcpy(&i01, in + d, 4);
        memcpy(&i23, in + d + 2, 4);
        part = (int32_t)__smlad(__sxtb16(w4), (i01 & 0xFFFFu) | (i23 << 16), (uint32_t)part);
        part = (int32_t)__smlad(__sxtb16((w4 >> 8) | (w4 << 24)), (i01 >> 16) | (i23 & 0xFFFF0000u), (uint32_t)part);
      }
#else
      for (; d + 4 <= end; d += 4) /* four at a time: the loop's own cost shared by four products */
        part += (int32_t)row[d] * in[d] + (int32_t)row[d + 1] * in[d + 1] + (int32_t)row[d + 2] * in[d + 2]
                + (int32_t)row[d + 3] * in[d + 3];
#endif
      for (; d < end; ++d) part += (int32_t)row[d] * in[d];
      acc += part;
    }
    if (bias) acc += bias[o];
    out[o] = clamp16(mbqm64(acc, mult[o], shift[o]));
  }
}
""",
    "addsub": r"""/* ADD and SUB: each input scaled to twice the larger scale after a 15-bit left shift (int16) */
static void addsub_s16(const int16_t *a, const int16_t *b, int n, int sign, const int32_t *m, const int8_t *s,
                       int16_t *out) {
  int i;
  for (i = 0; i < n; ++i) {
    const int32_t sa = rdbpot(srdhm((int32_t)a[i] * (1 << 15), m[0]), -s[0]);
    const int32_t sb = rdbpot(srdhm((int32_t)b[i] * (1 << 15), m[1]), -s[1]);
    out[i] = clamp16(rdbpot(srdhm(sign > 0 ? sa + sb : sa - sb, m[2]), -s[2]));
  }
}
""",
    "mul": r"""static void mul_s16(const int16_t *a, const int16_t *b, int n, int32_t m, int s, int16_t *out) {
  int i;
  for (i = 0; i < n; ++i) out[i] = clamp16(mbqm((int32_t)a[i] * b[i], m, s));
}
""",
    "requant": r"""static void requant_s16(const int16_t *in, int n, int32_t m, int s, int16_t *out) {
  int i;
  for (i = 0; i < n; ++i) out[i] = clamp16(mbqm(in[i], m, s));
}
""",
    "table": r"""static const uint16_t sigmoid_table[256] = {SIGMOID_TABLE};
/* LOGISTIC/TANH: the input on the table's scale (multiplier 0: a power-of-two scale, a shift alone) */
static int32_t lut_input(int16_t x, int32_t multiplier, int left_shift) {
  if (multiplier == 0) { multiplier = 3 << left_shift; left_shift = 0; }
  return (x * multiplier + (left_shift > 0 ? 1 << (left_shift - 1) : 0)) >> left_shift;
}
""",
    "logistic": r"""static void logistic_s16(const int16_t *in, int n, int32_t multiplier, int left_shift,
                         int16_t *out) {
  int i;
  for (i = 0; i < n; ++i) {
    const int32_t v = lut_input(in[i], multiplier, left_shift);
    const uint32_t a = (uint32_t)(v < 0 ? -v : v), uh = a >> 9;
    uint32_t r;
    if (uh >= 255) r = 0x7FFFu << 10;
    else r = ((uint32_t)sigmoid_table[uh] << 9)
             + (a & 0x1ff) * (uint32_t)(sigmoid_table[uh + 1] - sigmoid_table[uh]);
    r = v >= 0 ? r + (1u << 9) : (1u << 25) - r + (1u << 9) - 1;
    out[i] = (int16_t)(r >> 10);
  }
}
""",
    "tanh": r"""static void tanh_s16(const int16_t *in, int n, int32_t multiplier, int left_shift, int16_t *out) {
  int i;
  for (i = 0; i < n; ++i) {
    const int32_t v = lut_input(in[i], multiplier, left_shift);
    const uint32_t a = (uint32_t)(v < 0 ? -v : v), uh = a >> 8;
    int32_t r;
    if (uh >= 255) r = 0xFFFF << 8;
    else r = (int32_t)(((uint32_t)sigmoid_table[uh] << 8)
                       + (uint8_t)(a & 0xFF) * (uint32_t)(sigmoid_table[uh + 1] - sigmoid_table[uh]));
    r = v >= 0 ? r - (1 << 23) + (1 << 7) : -r + (1 << 23) + (1 << 7) - 1;
    out[i] = (int16_t)(r >> 8);
  }
}
""",
}
NEEDS = {"FULLY_CONNECTED": ("mbqm64", "fc"), "ADD": ("addsub",), "SUB": ("addsub",), "MUL": ("mul",),
         "QUANTIZE": (), "LOGISTIC": ("table", "logistic"), "TANH": ("table", "tanh")}


def kernels(graph: Graph) -> str:
    """The C of the kernels this graph calls, in dependency order (the state carry always requantizes)."""
    used = {"base", "clamp", "requant"} | {k for op in graph.ops for k in NEEDS.get(op.kind, ())}
    return "/* TFLite Micro's reference arithmetic (gemmlowp fixed point, double rounding), C99. */\n" + \
        "".join(text for name, text in KERNELS.items() if name in used)


SIGMOID_TABLE = (  # tensorflow/lite/kernels/internal/common.h: sigmoid(i/24) in 0.16 fixed point
    "32768,33451,34133,34813,35493,36169,36843,37513,38180,38841,39498,40149,40794,41432,42064,42688,43304,43912,"
    "44511,45102,45683,46255,46817,47369,47911,48443,48964,49475,49975,50464,50942,51409,51865,52311,52745,53169,"
    "53581,53983,54374,54755,55125,55485,55834,56174,56503,56823,57133,57433,57724,58007,58280,58544,58800,59048,"
    "59288,59519,59743,59959,60168,60370,60565,60753,60935,61110,61279,61441,61599,61750,61896,62036,62172,62302,"
    "62428,62549,62666,62778,62886,62990,63090,63186,63279,63368,63454,63536,63615,63691,63765,63835,63903,63968,"
    "64030,64090,64148,64204,64257,64308,64357,64405,64450,64494,64536,64576,64614,64652,64687,64721,64754,64786,"
    "64816,64845,64873,64900,64926,64950,64974,64997,65019,65039,65060,65079,65097,65115,65132,65149,65164,65179,"
    "65194,65208,65221,65234,65246,65258,65269,65280,65291,65301,65310,65319,65328,65337,65345,65352,65360,65367,"
    "65374,65381,65387,65393,65399,65404,65410,65415,65420,65425,65429,65433,65438,65442,65445,65449,65453,65456,"
    "65459,65462,65465,65468,65471,65474,65476,65479,65481,65483,65485,65488,65489,65491,65493,65495,65497,65498,"
    "65500,65501,65503,65504,65505,65507,65508,65509,65510,65511,65512,65513,65514,65515,65516,65517,65517,65518,"
    "65519,65520,65520,65521,65522,65522,65523,65523,65524,65524,65525,65525,65526,65526,65526,65527,65527,65528,"
    "65528,65528,65529,65529,65529,65529,65530,65530,65530,65530,65531,65531,65531,65531,65531,65532,65532,65532,"
    "65532,65532,65532,65533,65533,65533,65533,65533,65533,65533,65533,65534,65534,65534,65534,65534,65534,65534,"
    "65534,65534,65534,65535")


def _double(x: float) -> float:
    return float(np.float32(x))


def addsub_params(a: float, b: float, out: float, sub: bool) -> list[tuple[int, int]]:
    """(multiplier, shift) for input 1, input 2 and the output: ADD's Prepare in double, SUB's in float32."""
    if sub:  # sub_common.cc: twice_max_input_scale and the quotients in float, then widened
        f = np.float32
        twice = f(2) * max(f(a), f(b))
        reals = [float(f(a) / twice), float(f(b) / twice), float(twice / (f(1 << 15) * f(out)))]
    else:
        twice = 2 * max(_double(a), _double(b))
        reals = [_double(a) / twice, _double(b) / twice, twice / ((1 << 15) * _double(out))]
    params = []
    for real in reals:
        if not 0 < real < 1:
            raise BundleError(f"ADD/SUB rescale {real} is outside (0, 1)")
        params.append(quantize_multiplier(real))
    return params


def state_carry_params(graph: Graph) -> tuple[int, int]:
    """Requantize state_out into the state input's scale (QUANTIZE's Prepare for int16 -> int16)."""
    state, state_out = graph.tensors[graph.inputs[1]], graph.tensors[graph.outputs[1]]
    return carry_params(state_out.scale, state.scale)


class Emitter:
    """The step's body: constants, a liveness-planned scratch buffer, and one kernel call per operator."""

    def __init__(self, graph: Graph, prefix: str) -> None:
        self.g, self.prefix = graph, prefix
        self.consts: list[str] = []
        self.body: list[str] = []
        self.root = {}  # tensor -> the tensor whose buffer it is (RESHAPE aliases)
        for op in graph.ops:
            for t in op.outputs:
                self.root[t] = self.root.get(op.inputs[0], op.inputs[0]) if op.kind == "RESHAPE" else t
        self.place: dict[int, str] = {}
        self.scratch = self._plan()

    def _plan(self) -> int:
        """Scratch offsets (int16 elements) by first fit over each buffer's live range."""
        x, state = self.g.inputs
        y = self.g.outputs[0]
        self.place[x], self.place[state] = "x", "state_in"
        if self.root.get(y, y) not in (x, state):
            self.place[self.root.get(y, y)] = "y"
        first, last = {}, {}
        for i, op in enumerate(self.g.ops):
            for t in op.outputs:
                first.setdefault(self.root.get(t, t), i)
            for t in op.inputs:
                if t >= 0 and self.g.tensors[t].data is None:
                    last[self.root.get(t, t)] = i
        last[self.root.get(self.g.outputs[1], self.g.outputs[1])] = len(self.g.ops)  # read by the final carry
        live: list[tuple[int, int, int]] = []  # (offset, size, last use)
        top = 0
        for t in sorted(first, key=first.get):
            if t in self.place:
                continue
            size = self.g.tensors[t].size
            live = [b for b in live if b[2] >= first[t]]
            offset = 0
            for start, length, _ in sorted(live):
                if offset + size <= start:
                    break
                offset = max(offset, start + length)
            live.append((offset, size, last.get(t, first[t])))
            self.place[t] = f"scratch + {offset}"
            top = max(top, offset + size)
        return top

    def buf(self, t: int) -> str:
        return self.place[self.root.get(t, t)]

    def const(self, ctype: str, name: str, values) -> str:
        flat = [int(v) for v in np.asarray(values).ravel()]
        suffix = "LL" if ctype == "int64_t" else ""
        rows = [", ".join(f"{v}{suffix}" for v in flat[i:i + 16]) for i in range(0, len(flat), 16)]
        self.consts.append(f"static const {ctype} {name}[{len(flat)}] = {{\n  " + ",\n  ".join(rows) + "\n};")
        return name

    def emit(self) -> None:
        for k, op in enumerate(self.g.ops):
            getattr(self, "op_" + op.kind.lower())(k, op)

    def op_reshape(self, k: int, op: Op) -> None:
        pass  # the output is the input's buffer

    def op_fully_connected(self, k: int, op: Op) -> None:
        t = self.g.tensors
        x, w = t[op.inputs[0]], t[op.inputs[1]]
        bias = t[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        out = t[op.outputs[0]]
        if x.dtype != "int16" or w.dtype != "int8" or (bias is not None and bias.dtype != "int64") or \
                (bias is None and op.options.get("quantizedBiasType", 0) not in (0, 9)):
            raise BundleError("FULLY_CONNECTED: the C generator computes int16 x int8 with int64 bias (a16w8)")
        outs, depth = w.shape
        scales = w.scales if len(w.scales) == outs else w.scales * outs
        pairs = [quantize_multiplier(_double(x.scale) * _double(s) / _double(out.scale)) for s in scales]
        m = self.const("int32_t", f"fc{k}_mult", [p[0] for p in pairs])
        sh = self.const("int8_t", f"fc{k}_shift", [p[1] for p in pairs])
        wname = self.const("int8_t", f"fc{k}_w", w.data)
        bname = self.const("int64_t", f"fc{k}_b", bias.data) if bias is not None else "0"
        self.body.append(f"  fc_s16({self.buf(op.inputs[0])}, {depth}, {wname}, {bname}, {outs}, {m}, {sh}, "
                         f"{self.buf(op.outputs[0])});")

    def _addsub(self, k: int, op: Op, sub: bool) -> None:
        a, b, out = (self.g.tensors[i] for i in (*op.inputs, op.outputs[0]))
        if a.size != b.size or a.size != out.size:
            raise BundleError("ADD/SUB with broadcasting: not computed by the C generator")
        params = addsub_params(a.scale, b.scale, out.scale, sub)
        m = self.const("int32_t", f"as{k}_mult", [p[0] for p in params])
        sh = self.const("int8_t", f"as{k}_shift", [p[1] for p in params])
        self.body.append(f"  addsub_s16({self.buf(op.inputs[0])}, {self.buf(op.inputs[1])}, {out.size}, "
                         f"{-1 if sub else 1}, {m}, {sh}, {self.buf(op.outputs[0])});")

    def op_add(self, k: int, op: Op) -> None:
        self._addsub(k, op, sub=False)

    def op_sub(self, k: int, op: Op) -> None:
        self._addsub(k, op, sub=True)

    def op_mul(self, k: int, op: Op) -> None:
        a, b, out = (self.g.tensors[i] for i in (*op.inputs, op.outputs[0]))
        if a.size != b.size or a.size != out.size:
            raise BundleError("MUL with broadcasting: not computed by the C generator")
        m, sh = quantize_multiplier(_double(a.scale) * _double(b.scale) / _double(out.scale))
        self.body.append(f"  mul_s16({self.buf(op.inputs[0])}, {self.buf(op.inputs[1])}, {out.size}, {m}, {sh}, "
                         f"{self.buf(op.outputs[0])});")

    def op_quantize(self, k: int, op: Op) -> None:
        a, out = self.g.tensors[op.inputs[0]], self.g.tensors[op.outputs[0]]
        m, sh = quantize_multiplier(_double(a.scale) / _double(out.scale))
        self.body.append(f"  requant_s16({self.buf(op.inputs[0])}, {out.size}, {m}, {sh}, {self.buf(op.outputs[0])});")

    def op_logistic(self, k: int, op: Op) -> None:
        m, sh = lut_rescale(self.g.tensors[op.inputs[0]].scale, (0,))
        self.body.append(f"  logistic_s16({self.buf(op.inputs[0])}, {self.g.tensors[op.inputs[0]].size}, {m}, {sh}, "
                         f"{self.buf(op.outputs[0])});")

    def op_tanh(self, k: int, op: Op) -> None:
        m, sh = lut_rescale(self.g.tensors[op.inputs[0]].scale, (0, 1))
        self.body.append(f"  tanh_s16({self.buf(op.inputs[0])}, {self.g.tensors[op.inputs[0]].size}, {m}, {sh}, "
                         f"{self.buf(op.outputs[0])});")

    def _copy(self, source: int, target: int, source_index: np.ndarray, target_index: np.ndarray) -> None:
        """memcpy of every contiguous run where source_index[i] -> target_index[i]."""
        i = 0
        while i < len(source_index):
            j = i + 1
            while j < len(source_index) and source_index[j] == source_index[j - 1] + 1 and \
                    target_index[j] == target_index[j - 1] + 1:
                j += 1
            self.body.append(f"  memcpy({self.buf(target)} + {target_index[i]}, {self.buf(source)} + "
                             f"{source_index[i]}, {j - i} * sizeof(int16_t));")
            i = j

    def op_slice(self, k: int, op: Op) -> None:
        x = self.g.tensors[op.inputs[0]]
        begin, size = (self.g.tensors[i].data.astype(int).ravel() for i in op.inputs[1:3])
        size = [x.shape[d] - begin[d] if size[d] == -1 else size[d] for d in range(len(x.shape))]
        index = np.arange(x.size).reshape(x.shape)[tuple(slice(b, b + n) for b, n in zip(begin, size, strict=True))]
        self._copy(op.inputs[0], op.outputs[0], index.ravel(), np.arange(index.size))

    def op_concatenation(self, k: int, op: Op) -> None:
        out = self.g.tensors[op.outputs[0]]
        axis = op.options.get("axis", 0) % len(out.shape)
        index = np.arange(out.size).reshape(out.shape)
        start = 0
        for t in op.inputs:
            n = self.g.tensors[t].shape[axis]
            part = np.take(index, range(start, start + n), axis=axis).ravel()
            self._copy(t, op.outputs[0], np.arange(part.size), part)
            start += n


def generate(model: bytes, prefix: str, labels: list[str], where: str) -> dict[str, str]:
    """{"<prefix>.h": ..., "<prefix>.c": ...}: the C library of an integer-only stream file (T=1)."""
    graph = read_graph(model, where)
    x, state = (graph.tensors[i] for i in graph.inputs)
    y, state_out = (graph.tensors[i] for i in graph.outputs)
    for role, t in (("x", x), ("state", state), ("y", y), ("state_out", state_out)):
        if t.dtype != "int16" or t.zero_point != 0 or len(t.scales) != 1:
            raise BundleError(f"{where}: {role} must be int16 with one scale and zero point 0 (a16w8), got "
                              f"{t.dtype}, {len(t.scales)} scales, zero point {t.zero_point}")
    if x.shape[:-1] not in ((1,), (1, 1)) or state.size != state_out.size:
        raise BundleError(f"{where}: a one-step stream file is needed (x {x.shape}, state {state.shape})")
    emit = Emitter(graph, prefix)
    emit.emit()
    carry_m, carry_s = state_carry_params(graph)
    up = prefix.upper()
    names = ", ".join('"' + label.replace('"', "") + '"' for label in labels) or '""'
    header = f"""/* {prefix}: generated by rnnedge (rnnedge mcu) from an integer-only stream file; do not edit.
   One step per call, the state owned by the caller: several sensors are several state arrays, a snapshot or a
   reset is a memcpy / memset of it. No heap, no interpreter, no floating point in the step. */
#ifndef {up}_H
#define {up}_H
#include <stdint.h>

#define {up}_INPUTS {x.shape[-1]}
#define {up}_OUTPUTS {y.shape[-1]}
#define {up}_STATE {state.size}          /* int16 values; all zero is the start state */
#define {up}_SCRATCH_BYTES {2 * emit.scratch}  /* on the stack, during a step */
/* real value = scale * integer (zero points are 0): quantize x with round(x / X_SCALE), clamped to int16 */
#define {up}_X_SCALE {x.scale!r}f
#define {up}_Y_SCALE {y.scale!r}f
#define {up}_STATE_SCALE {state.scale!r}f

extern const char *const {prefix}_labels[{max(1, len(labels))}];

/* state: in and out (int16[{up}_STATE]); x: int16[{up}_INPUTS]; y: int16[{up}_OUTPUTS] */
void {prefix}_step(int16_t *state, const int16_t *x, int16_t *y);

#endif
"""
    source = f"""/* {prefix}: generated by rnnedge from an integer-only stream file; do not edit. The arithmetic is
   TFLite Micro's reference kernels' (see rnnedge/export/cgen.py), so the outputs are its integers. */
#include <stdint.h>
#include <string.h>
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif
#include "{prefix}.h"

const char *const {prefix}_labels[{max(1, len(labels))}] = {{{names}}};
{kernels(graph).replace("SIGMOID_TABLE", SIGMOID_TABLE)}
{chr(10).join(emit.consts)}

void {prefix}_step(int16_t *state, const int16_t *x, int16_t *y) {{
  int16_t scratch[{max(1, emit.scratch)}];
  const int16_t *state_in = state;
{chr(10).join(emit.body)}
  requant_s16({emit.buf(graph.outputs[1])}, {state.size}, {carry_m}, {carry_s}, state);
}}
"""
    return {f"{prefix}.h": header, f"{prefix}.c": source}
