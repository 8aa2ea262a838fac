"""BatchNorm1d's training pass with the same bits at any thread count, so that a BatchNorm MLP
trains to the same numbers whatever threads the core lease gives it.

    with InvariantBatchNorm():     # training.loop does this around a step's forward
        log_probs = model(xb)      # each BatchNorm1d in training mode runs batch_norm below

torch's CPU kernel splits each channel's sums over the batch between its threads, so 1 and 2
threads round differently (benchmarks/README.md, issue 22's part 3). Here it runs on one thread,
forward and backward: torch's own kernel and its numbers at 1 thread, whatever the run's
threads. Why our own code in the hot path: torch has no thread-invariant BatchNorm. (Written
out in sums that TensorIterator splits by channel only, the pass also gave the same bits at any
thread count, but cost more: an epoch 1.10-1.22x torch's at 1 thread against 1.07-1.10x here,
some thirty small operations where torch runs two kernels; benchmarks/README.md.) The
modules stay torch's nn.BatchNorm1d, their state, saving and export unchanged:
InvariantBatchNorm, a TorchFunctionMode, catches their F.batch_norm call; BatchNorm2d (4-D
input), eval mode, bf16, fp16 and GPU tensors go on to torch's kernel as they were.
"""

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode


class _BatchNorm(torch.autograd.Function):
    """torch's batch-statistics BatchNorm (native_batch_norm and its backward) on one thread;
    the running statistics updated in place as F.batch_norm does. Twice differentiable: the
    backward is torch's, whose own derivative autograd knows."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        threads = torch.get_num_threads()  # set back in `finally`: no generator, it is hot
        torch.set_num_threads(1)
        try:
            y, mean, invstd = torch.native_batch_norm(
                x, weight, bias, running_mean, running_var, True, momentum, eps
            )
        finally:
            torch.set_num_threads(threads)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, invstd = ctx.saved_tensors
        wanted = ctx.needs_input_grad[:3]  # x, weight, bias
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            grads = torch.ops.aten.native_batch_norm_backward(
                dy, x, weight, None, None, mean, invstd, True, ctx.eps, wanted
            )
        finally:
            torch.set_num_threads(threads)
        return *grads, None, None, None, None


def batch_norm(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """F.batch_norm in training mode (batch statistics) with the same bits at any thread count,
    those of torch's kernel at 1 thread: y = (x - mean) / sqrt(var + eps) * weight + bias per
    channel of x (N, C) or (N, C, L), mean and biased var over N (and L); running_mean and
    running_var (C,), where given, move by `momentum` towards the mean and the unbiased var.
    Gradients for x, weight and bias, twice differentiable. Needs N * L >= 2, as torch's
    (`applies`)."""
    return _BatchNorm.apply(x, weight, bias, running_mean, running_var, momentum, eps)


def _arguments(
    input,
    running_mean,
    running_var,
    weight=None,
    bias=None,
    training=False,
    momentum=0.1,
    eps=1e-5,
) -> tuple:
    """F.batch_norm's arguments, as it names them, in its order."""
    return input, running_mean, running_var, weight, bias, training, momentum, eps


def applies(x: Tensor, training: bool, weight: Tensor | None) -> bool:
    """Whether batch_norm takes this F.batch_norm call: batch statistics of float32 (N, C) or
    (N, C, L) on the CPU, outside autocast, with at least 2 values per channel (torch raises
    otherwise)."""
    return (
        training
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() in (2, 3)
        and (weight is None or weight.dtype == torch.float32)
        and x.numel() >= 2 * x.shape[1]
        and not torch.is_autocast_enabled("cpu")
    )


class InvariantBatchNorm(TorchFunctionMode):
    """Within it, F.batch_norm in training mode (BatchNorm1d's forward) runs batch_norm where
    it applies (`applies`); every other call runs as it would. Thread-local, as torch's modes
    are."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            x, mean, var, weight, bias, training, momentum, eps = _arguments(*args, **kwargs)
            if applies(x, training, weight):
                return batch_norm(x, mean, var, weight, bias, momentum, eps)
        return func(*args, **kwargs)
