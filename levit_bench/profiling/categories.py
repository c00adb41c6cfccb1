"""One vocabulary of operation categories, and the rules that put each runtime's op names in it.

Runtimes name the same work differently (``aten::addmm``, ``FusedMatMul``, ``FullyConnected``), and
fuse differently.  Every rule here reads only what the runtime's own profiler reports (op name or
type, kernel name, tensor shapes), so a category is what that runtime ran, not what the model
source says.  Anything no rule knows goes to ``other`` under its own name: nothing is guessed.

A fused kernel gets the category of its heaviest part: softmax, then normalisation, then
arithmetic; a kernel that only moves data is a layout reorder/copy.  A runtime's fused attention
kernel (QKᵀ, softmax and ·V in one, as OpenVINO's MHA snippets) counts as attention softmax: its
time cannot be split, and its op name says what it holds.
"""
from __future__ import annotations

import re
from collections.abc import Collection, Sequence

#: category key -> label, in the order tables and plots show them; ``other`` last
CATEGORIES: dict[str, str] = {
    "matmul": "matrix multiply",
    "conv": "convolution",
    "depthwise_conv": "depthwise convolution",
    "attention_softmax": "attention softmax",
    "elementwise": "activation/elementwise",
    "norm": "normalisation",
    "layout": "layout reorder/copy",
    "other": "other",
}
#: the named categories: their share of the profiled op time is the coverage
NAMED = tuple(k for k in CATEGORIES if k != "other")

Shape = Sequence[int]


def is_depthwise(input_shape: Shape | None, weight_shape: Shape | None) -> bool:
    """A convolution whose every group has one input channel (weight ``[C·m, 1, k, k]``) on an
    input with more than one channel: groups == input channels."""
    if not input_shape or not weight_shape or len(input_shape) < 3 or len(weight_shape) < 3:
        return False
    return weight_shape[1] == 1 and input_shape[1] > 1


def _conv(shapes: Sequence[Shape] | None) -> str:
    shapes = shapes or []
    return "depthwise_conv" if len(shapes) > 1 and is_depthwise(shapes[0], shapes[1]) else "conv"


# --- torch (eager, TorchScript and torch.compile's extern kernels) ------------------------------

_TORCH_MATMUL = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "addmv", "mv", "dot", "einsum",
                 "_linear_pointwise", "mkldnn_linear", "_mkl_linear", "_addmm_activation", "_weight_int8pack_mm"}
_TORCH_CONV = {"conv1d", "conv2d", "conv3d", "convolution", "_convolution", "mkldnn_convolution",
               "_convolution_pointwise", "_nnpack_spatial_convolution", "thnn_conv2d", "_slow_conv2d_forward",
               "slow_conv_dilated2d", "convolution_overrideable", "cudnn_convolution"}
_TORCH_DEPTHWISE = {"_conv_depthwise2d", "conv_depthwise3d"}
_TORCH_ATTENTION = {"softmax", "_softmax", "_safe_softmax", "log_softmax", "_log_softmax", "scaled_dot_product_attention",
                    "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math",
                    "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                    "_scaled_dot_product_cudnn_attention"}
_TORCH_NORM = {"batch_norm", "_batch_norm_impl_index", "native_batch_norm", "_native_batch_norm_legit",
               "_native_batch_norm_legit_no_training", "layer_norm", "native_layer_norm", "group_norm",
               "native_group_norm", "instance_norm", "rms_norm", "_fused_rms_norm", "normalize"}
_TORCH_LAYOUT = {"copy_", "clone", "contiguous", "to", "_to_copy", "to_mkldnn", "_to_dense", "to_dense", "permute",
                 "transpose", "t", "reshape", "view", "_unsafe_view", "flatten", "unflatten", "cat", "stack",
                 "expand", "expand_as", "narrow", "slice", "select", "split", "split_with_sizes", "chunk", "unbind",
                 "unsqueeze", "squeeze", "as_strided", "as_strided_", "pad", "constant_pad_nd", "index",
                 "index_select", "gather", "roll", "flip", "repeat", "pixel_shuffle", "channel_shuffle",
                 "_reshape_alias", "alias", "detach", "lift_fresh", "movedim"}
_TORCH_ELEMENTWISE = {
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "neg", "abs", "exp", "log", "sqrt", "rsqrt", "pow",
    "reciprocal", "square", "clamp", "clamp_", "clamp_min", "clamp_max", "clip", "where", "maximum", "minimum",
    "relu", "relu_", "relu6", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "hardtanh", "hardtanh_",
    "silu", "silu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "gelu", "gelu_", "erf", "mish", "mish_", "elu", "elu_",
    "leaky_relu", "leaky_relu_", "softplus", "threshold", "threshold_", "addcmul", "addcdiv", "lerp", "fill_",
    "zero_", "masked_fill", "masked_fill_", "dropout", "rsub", "floor", "ceil", "round", "sign", "fmod",
    "remainder", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not", "bitwise_and",
    "prelu", "_prelu_kernel", "glu", "celu", "selu", "logsigmoid", "sin", "cos",
}
#: markers of the framework around ops (dynamo's guards, the compiled graph's Python wrapper): their
#: self time is framework overhead, counted in the wall time of the calls but not as op time
_TORCH_FRAMEWORK = re.compile(r"^(## .* ##|Torch-Compiled Region.*|TorchDynamo Cache Lookup|CompiledFunction|"
                              r"Pregraph bytecode|AOTDispatcher Runtime Wrapper Prologue|"
                              r"## Call CompiledFxGraph .*)$")
#: an inductor-generated CPU kernel, recorded when the graph was compiled with
#: ``cpp.enable_kernel_profile``: fused ops (``graph_0_cpp_fused__softmax_add_view_6``) or a
#: template (``graph_0_cpp_packed_gemm_2``, max-autotune's GEMMs)
_INDUCTOR_KERNEL = re.compile(r"^(?:graph_\d+_)?(cpp_[A-Za-z0-9_]*?)(?:_\d+)?$")

#: aten ops with no cost of their own inside a generated kernel (views and index arithmetic)
_VIEW_TOKENS = {"view", "_unsafe_view", "unsqueeze", "squeeze", "expand", "slice", "select", "split",
                "split_with_sizes", "as_strided", "reshape", "alias", "permute", "t", "unbind", "lift", "fresh",
                "constant", "scalar", "tensor", "full", "arange", "iota", "index", "unsafe"}


def is_torch_framework(name: str) -> bool:
    """Whether a torch.profiler event marks the framework (not an op)."""
    return bool(_TORCH_FRAMEWORK.match(name))


def inductor_kernel_name(name: str) -> str | None:
    """The inductor kernel's name without its graph and index (``cpp_fused__softmax_add_view``);
    None for anything else."""
    m = _INDUCTOR_KERNEL.match(name)
    return m.group(1) if m else None


def _tokens(fused: str) -> list[str]:
    """``_softmax_add_view`` -> the aten op names inductor joined (``_softmax``, ``add``, ``view``)."""
    known = _TORCH_MATMUL | _TORCH_CONV | _TORCH_ATTENTION | _TORCH_NORM | _TORCH_LAYOUT | _TORCH_ELEMENTWISE \
        | _VIEW_TOKENS | {"mean", "sum", "amax", "amin", "max", "min", "avg_pool2d", "max_pool2d", "_adaptive_avg_pool2d"}
    parts = fused.split("_")
    out, i = [], 0
    while i < len(parts):  # longest known run of parts first (``split_with_sizes``, ``_softmax``)
        for j in range(len(parts), i, -1):
            word = "_".join(parts[i:j])
            if word in known or ("_" + word) in known:
                out.append(word if word in known else "_" + word)
                i = j
                break
        else:
            if parts[i]:
                out.append(parts[i])
            i += 1
    return out


def inductor_category(kernel: str) -> str:
    """A generated kernel by the aten ops it fuses: softmax, then normalisation, then arithmetic;
    only data movement is layout.  The matmul or convolution a fused kernel is named after runs in
    an extern kernel (recorded as its aten op): the generated one only lays out its operands
    (``cpp_fused_convolution_0`` transposes the input to channels-last), so it is layout.  A
    template kernel (``cpp_packed_gemm``) computes the GEMM itself."""
    if not kernel.startswith("cpp_fused_"):
        if re.search(r"gemm|(^|_)b?mm(_|$)", kernel):
            return "matmul"
        return "attention_softmax" if "attention" in kernel else "other"
    tokens = set(_tokens(kernel.removeprefix("cpp_fused_"))) - _VIEW_TOKENS
    if tokens & _TORCH_ATTENTION:
        return "attention_softmax"
    if tokens & _TORCH_NORM:
        return "norm"
    compute = tokens - _TORCH_MATMUL - _TORCH_CONV
    if compute & _TORCH_ELEMENTWISE:
        return "elementwise"
    if compute <= _TORCH_LAYOUT:  # copies, or operands laid out for an extern matmul/convolution
        return "layout"
    return "other"


def torch_category(name: str, input_shapes: Sequence[Shape] | None = None) -> str | None:
    """Category of a torch.profiler event (self time); None for framework markers (not ops).
    ``input_shapes`` (``record_shapes``) tells depthwise convolutions apart by their weight."""
    if is_torch_framework(name):
        return None
    kernel = inductor_kernel_name(name)
    if kernel is not None:
        return inductor_category(kernel)
    op = name.split("::", 1)[-1]
    if op in _TORCH_CONV:
        return _conv(input_shapes)
    if op in _TORCH_DEPTHWISE:
        return "depthwise_conv"
    for names, category in ((_TORCH_MATMUL, "matmul"), (_TORCH_ATTENTION, "attention_softmax"),
                            (_TORCH_NORM, "norm"), (_TORCH_LAYOUT, "layout"), (_TORCH_ELEMENTWISE, "elementwise")):
        if op in names:
            return category
    return "other"


# --- ONNX Runtime (op types of the optimised graph, contrib and NCHWc ops included) -------------

_ORT = {
    "matmul": {"MatMul", "FusedMatMul", "Gemm", "FusedGemm", "MatMulInteger", "QLinearMatMul", "MatMulNBits",
               "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QGemm", "TransposeMatMul"},
    "conv": {"Conv", "FusedConv", "ConvInteger", "QLinearConv", "NhwcConv", "NhwcFusedConv", "ConvTranspose"},
    "attention_softmax": {"Softmax", "LogSoftmax", "Attention", "MultiHeadAttention", "GroupQueryAttention",
                          "QLinearSoftmax"},
    "norm": {"BatchNormalization", "LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
             "SkipSimplifiedLayerNormalization", "InstanceNormalization", "GroupNorm", "GroupNormalization",
             "RMSNormalization", "MeanVarianceNormalization", "LpNormalization", "EmbedLayerNormalization"},
    "layout": {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gather",
               "GatherElements", "GatherND", "Expand", "Tile", "Pad", "ReorderInput", "ReorderOutput", "Identity",
               "DepthToSpace", "SpaceToDepth", "MemcpyFromHost", "MemcpyToHost", "Shape", "Size", "QLinearConcat"},
    "elementwise": {"Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "HardSigmoid", "HardSwish", "QuickGelu", "Gelu",
                    "FastGelu", "BiasGelu", "Erf", "Tanh", "Clip", "Pow", "Sqrt", "Reciprocal", "Exp", "Log", "Neg",
                    "Abs", "Max", "Min", "Where", "LeakyRelu", "Elu", "Selu", "Softplus", "Mish", "BiasAdd", "Sum",
                    "Cast", "Equal", "Less", "Greater", "Not", "And", "Or", "PRelu", "Celu", "Floor", "Ceil",
                    "Round", "Sign", "Mod", "BiasSplitGelu", "QuickGeluGrad", "Dropout", "QuantizeLinear",
                    "DequantizeLinear", "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul", "QLinearSigmoid",
                    "QLinearLeakyRelu", "QLinearHardSigmoid"},
}


def ort_category(op_type: str, input_shapes: Sequence[Shape] | None = None) -> str:
    """Category of an ONNX Runtime node (``args.op_name`` of a ``Node`` event in the session trace)."""
    for category, names in _ORT.items():
        if op_type in names:
            return _conv(input_shapes) if category == "conv" else category
    return "other"


# --- OpenVINO (runtime model node types, as ``get_profiling_info()`` reports them) --------------

_OV = {
    "matmul": {"FullyConnected", "FullyConnectedQuantized", "FullyConnectedQuantizedLegacy", "MatMul", "Gemm"},
    "conv": {"Convolution", "GroupConvolution", "Deconvolution", "BinaryConvolution"},
    "attention_softmax": {"Softmax", "SoftMax", "ScaledDotProductAttention", "ScaledAttn", "MHA"},
    "norm": {"MVN", "NormalizeL2", "BatchNormInference", "RMS", "LayerNorm", "GroupNormalization"},
    "layout": {"Reorder", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Concatenation", "Concat", "Split",
               "VariadicSplit", "Slice", "StridedSlice", "Gather", "Broadcast", "Pad", "DepthToSpace",
               "SpaceToDepth", "ShuffleChannels", "Tile", "Roll", "ShapeOf", "Convert"},
    "elementwise": {"Eltwise", "Math", "Add", "Subtract", "Multiply", "Divide", "Power", "Maximum", "Minimum",
                    "Relu", "Sigmoid", "HSwish", "HSigmoid", "Swish", "SwishCPU", "Gelu", "Tanh", "Clamp", "Exp",
                    "Elu", "Mish", "SoftPlus", "PRelu", "Sqrt", "Erf", "Select", "Abs", "Negative",
                    "SquaredDifference", "FloorMod", "Floor", "Ceiling", "LogicalNot", "FakeQuantize"},
}
#: original-model op types that make a snippet (``Subgraph``) a matmul, softmax or normalisation
_SNIPPET_KINDS = (("attention_softmax", {"Softmax", "SoftMax", "LogSoftmax"}), ("matmul", {"MatMul", "Brgemm"}),
                  ("norm", {"MVN", "NormalizeL2", "GroupNormalization"}))


def openvino_category(node_type: str, exec_type: str, body: Collection[str] | None = None,
                      elementwise_shapes: bool = False) -> str:
    """Category of an OpenVINO runtime node.  Depthwise convolutions say ``dw`` in their exec type
    (``brgconv_avx2_dw_f32``).  A snippet (``Subgraph``) is classified by ``body``, the op types of
    the original model it holds; without a body, it is elementwise only when its output shape is
    the broadcast of its inputs (``elementwise_shapes``: no matmul or reduction can be inside)."""
    if node_type == "Subgraph":
        return _snippet_category(body, elementwise_shapes)
    for category, names in _OV.items():
        if node_type in names:
            if category == "conv" and re.search(r"(^|_)dw(_|$)", exec_type):
                return "depthwise_conv"
            return category
    return "other"


def _snippet_category(body: Collection[str] | None, elementwise_shapes: bool) -> str:
    if not body:
        return "elementwise" if elementwise_shapes else "other"
    kinds = set(body)
    for category, names in _SNIPPET_KINDS:
        if kinds & names:
            return category
    if kinds <= _OV["layout"]:
        return "layout"
    if kinds <= _OV["elementwise"] | _OV["layout"]:
        return "elementwise"
    return "other"


def snippet_name(body: Collection[str] | None) -> str:
    """How a snippet is named in tables: ``Subgraph[MatMul×2, Softmax, …]`` (what it holds)."""
    if not body:
        return "Subgraph"
    counts: dict[str, int] = {}
    for kind in body:
        counts[kind] = counts.get(kind, 0) + 1
    parts = [f"{k}×{n}" if n > 1 else k for k, n in sorted(counts.items())]
    return f"Subgraph[{', '.join(parts)}]"
