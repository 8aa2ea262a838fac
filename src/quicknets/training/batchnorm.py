"""BatchNorm1d's training pass in sums that give the same bits at any thread count, so that a
BatchNorm MLP trains to the same numbers whatever threads the core lease gives it.

    with InvariantBatchNorm():     # training.loop does this around a step's forward
        log_probs = model(xb)      # each BatchNorm1d in training mode runs batch_norm below

torch's CPU kernel splits each channel's sums over the batch between its threads, so 1 and 2
threads round differently (benchmarks/README.md, issue 22's part 3). Here every sum is
`torch.sum(x, 0)` over a contiguous (B, C) tensor: TensorIterator splits such a sum over the
channels only, each channel summed whole in one order, for any thread count (tested). The rest
is elementwise. The modules stay torch's nn.BatchNorm1d (their state, saving and export
unchanged): InvariantBatchNorm, a TorchFunctionMode, catches their F.batch_norm call; BatchNorm2d
(4-D input), eval mode, bf16, fp16 and GPU tensors go on to torch's kernel.
"""

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.overrides import TorchFunctionMode


class _BatchNorm(torch.autograd.Function):
    """y = (x - mean) * invstd * weight + bias over x (N, C), float32, contiguous; the running
    statistics (C,) updated in place as torch's kernel does (the variance unbiased)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        n = x.shape[0]
        mean = x.sum(0).div_(n)  # (C,)
        xhat = x - mean  # (N, C): centred, then normalised in place
        y = torch.mul(xhat, xhat)  # squares, in the buffer that then takes the output
        squares = y.sum(0)  # (C,): n times the biased variance
        invstd = squares.div(n).add_(eps).rsqrt_()
        xhat.mul_(invstd)
        if weight is not None and bias is not None:
            torch.addcmul(bias, xhat, weight, out=y)
        else:  # affine=False
            y.copy_(xhat)
            if weight is not None:
                y.mul_(weight)
            if bias is not None:
                y.add_(bias)
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
            running_var.mul_(1 - momentum).add_(squares.div_(n - 1), alpha=momentum)
        ctx.save_for_backward(xhat, invstd, weight)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        xhat, invstd, weight = ctx.saved_tensors
        n = dy.shape[0]
        dy = dy.contiguous()
        dbias = dy.sum(0)  # (C,)
        dx = torch.mul(dy, xhat)  # (N, C): the weight's terms, then the input's gradient
        dweight = dx.sum(0)
        if not ctx.needs_input_grad[0]:
            dx = None
        else:  # dx = weight * invstd / n * (n * dy - dbias - xhat * dweight)
            k = invstd if weight is None else weight * invstd
            torch.addcmul(dbias.mul(k).div_(-n), xhat, dweight.mul(k).div_(-n), out=dx)
            dx.addcmul_(dy, k)
        needs = ctx.needs_input_grad
        return dx, dweight if needs[1] else None, dbias if needs[2] else None, *[None] * 4


def batch_norm(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """F.batch_norm in training mode (batch statistics) for float32 x of shape (N, C) or
    (N, C, L), with the same bits at any thread count: y = (x - mean) / sqrt(var + eps) *
    weight + bias per channel, mean and biased var over N (and L); running_mean and
    running_var (C,), where given, move by `momentum` towards the mean and the unbiased var.
    Gradients for x, weight and bias (not twice differentiable). Needs N * L >= 2, as torch's."""
    if x.dim() == 3:  # (N, C, L): the channel's values of every position as rows of (N * L, C)
        n, c, length = x.shape
        rows = x.transpose(1, 2).reshape(n * length, c)
        y = batch_norm(rows, running_mean, running_var, weight, bias, momentum, eps)
        return y.reshape(n, length, c).transpose(1, 2).contiguous()
    return _BatchNorm.apply(x.contiguous(), weight, bias, running_mean, running_var, momentum, eps)


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
