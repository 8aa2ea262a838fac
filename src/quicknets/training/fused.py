"""The forward and backward pass of a Linear+ReLU network written out by hand: the notebook's
MLP trains without autograd, to the same numbers, in preallocated buffers.

    step = fused_step(model, config, device)   # None where it does not apply: autograd then
    loss, log_probs = step(xb, yb)             # fills each parameter's .grad; then opt.step()

It covers a network that is Flatten, Linear, ReLU, ..., Linear, LogSoftmax, trained in fp32 with
the NLL loss (with class weights or without) on the CPU, with any optimizer, schedule or
augmentation. Each product is the one autograd would run (`addmm` forward, `grad.t() @ input`
and `grad @ weight` backward) and the loss gradient comes from autograd's own kernels, so the
results are bit for bit those of autograd (tests/training/test_fused.py holds it to that); what
goes is autograd's bookkeeping: the graph, a fresh tensor for every intermediate, and the input
gradient of the first layer that nobody needs (a quarter of the epoch's matrix work for
784-256-128-64-10). benchmarks/floor.py times it. StackedStep is the same pass for K variants of
one shape at once (batched products, with dropout and label smoothing per variant), for
training/stacked.py.
"""

import torch
from torch import nn
from torch.nn import functional as F

aten = torch.ops.aten
MEAN = 1  # reduction code of the NLL loss kernels (0 none, 1 mean, 2 sum)
NO_IGNORE = -100  # nn.NLLLoss's default ignore_index


def fusable(model: nn.Module) -> list | None:
    """The Linear layers of `model` when it is a plain Linear+ReLU stack ending in LogSoftmax,
    with no hooks and every parameter a trainable float32 tensor on the CPU; else None."""
    layers = list(model.children()) if isinstance(model, nn.Sequential) else []
    if (
        layers
        and type(layers[0]) is nn.Flatten
        and (layers[0].start_dim, layers[0].end_dim) == (1, -1)
    ):
        layers = layers[1:]
    if len(layers) < 2 or type(layers[-1]) is not nn.LogSoftmax or layers[-1].dim not in (1, -1):
        return None
    linears, body = layers[0:-1:2], layers[1:-1:2]
    if (
        len(body) != len(linears) - 1
        or any(type(m) is not nn.ReLU for m in body)
        or any(type(m) is not nn.Linear or m.bias is None for m in linears)
    ):
        return None
    from torch.nn.modules import module as everywhere  # hooks registered for every module

    hooked = any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
        for m in model.modules()
    ) or any(
        (
            everywhere._global_forward_hooks,
            everywhere._global_forward_pre_hooks,
            everywhere._global_backward_hooks,
            everywhere._global_backward_pre_hooks,
        )
    )
    params = list(model.parameters())
    if hooked or any(
        p.dtype != torch.float32 or not p.requires_grad or p.device.type != "cpu" for p in params
    ):
        return None
    return linears


def fused_step(model: nn.Module, config, device: torch.device, weights: list | None = None):
    """A FusedStep for this model and run, or None where autograd must do it: another device
    (not measured there), mixed precision, torch.compile, label smoothing, or a network with
    anything but Linear and ReLU layers (BatchNorm, dropout, convolutions, other activations).
    `weights`: each class's weight in the loss (loop.class_weights), None for none."""
    if (
        device.type != "cpu"
        or config.bf16
        or config.fp16
        or config.compile
        or config.label_smoothing > 0
    ):
        return None
    linears = fusable(model)
    return FusedStep(linears, config.batch_size, weights) if linears is not None else None


class FusedStep:
    """Forward and backward of one batch; the buffers are made once, for `batch_size` rows.
    `weights`: the classes' weights in the NLL loss (a weighted mean, as nn.NLLLoss(weight))."""

    def __init__(self, linears: list, batch_size: int, weights: list | None = None):
        self.linears = linears
        weight = linears[0].weight
        self.class_weight = None if weights is None else torch.tensor(weights, dtype=weight.dtype)
        self.out = [weight.new_empty(batch_size, m.out_features) for m in linears]  # z, then h
        self.grad = (
            [None]
            + [
                weight.new_empty(batch_size, m.in_features)  # dL/dh
                for m in linears[1:]
            ]
        )
        self.one = weight.new_ones(())  # d loss / d loss
        for m in linears:  # the optimizer reads these; each step overwrites them
            m.weight.grad = torch.empty_like(m.weight)
            m.bias.grad = torch.empty_like(m.bias)

    @torch.no_grad()
    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple:
        """((weighted) mean NLL loss, log-probabilities) of the batch xb (B, C, H, W) with
        labels yb (B,), leaving the gradients in the parameters' .grad."""
        n = len(yb)
        h = xb.reshape(n, -1)  # (B, C*H*W): a view of a gathered batch
        inputs = []  # each layer's input, kept for its weight gradient
        for i, m in enumerate(self.linears):
            inputs.append(h)
            h = torch.addmm(m.bias, h, m.weight.t(), out=self.out[i][:n])  # (B, out)
            if i + 1 < len(self.linears):
                h.relu_()
        log_probs = torch.log_softmax(h, 1)
        w = self.class_weight  # the total weight `total` divides the sum: sum(w_y * nll) / total
        loss, total = aten.nll_loss_forward(log_probs, yb, w, MEAN, NO_IGNORE)
        g = aten.nll_loss_backward(self.one, log_probs, yb, w, MEAN, NO_IGNORE, total)
        g = aten._log_softmax_backward_data(g, log_probs, 1, torch.float32)  # dL/dz (B, K)
        for i in range(len(self.linears) - 1, -1, -1):
            m = self.linears[i]
            torch.mm(g.t(), inputs[i], out=m.weight.grad)  # (out, in)
            torch.sum(g, 0, out=m.bias.grad)
            if i > 0:  # the first layer's input needs no gradient
                g = torch.mm(g, m.weight, out=self.grad[i][:n])  # dL/dh (B, in)
                aten.threshold_backward.grad_input(g, inputs[i], 0, grad_input=g)  # ReLU'
        return loss, log_probs


class StackedStep:
    """Forward and backward of K variants' batches at once into their .grad views; `linears`:
    K lists of Linear layers of the same shapes, `p`: (K,) dropout probabilities."""

    def __init__(self, linears: list, p: list, smoothing: list, drop_gens: list):
        self.linears, self.drop_gens = linears, drop_gens
        self.p = p
        k = len(linears)
        self.weights, self.biases, self.wgrads, self.bgrads = [], [], [], []
        for i in range(len(linears[0])):  # layer i of every variant -> (K, out, in), (K, out)
            w = torch.stack([ls[i].weight.detach() for ls in linears])
            b = torch.stack([ls[i].bias.detach() for ls in linears])
            gw, gb = torch.empty_like(w), torch.empty_like(b)
            for j, ls in enumerate(linears):  # the variant's parameters become views
                ls[i].weight.data, ls[i].bias.data = w[j], b[j]
                ls[i].weight.grad, ls[i].bias.grad = gw[j], gb[j]
            self.weights.append(w)
            self.biases.append(b)
            self.wgrads.append(gw)
            self.bgrads.append(gb)
        self.eps = torch.tensor(smoothing, dtype=torch.float32).view(k, 1, 1)
        self.smoothing = [float(e) for e in smoothing]  # as each run alone's loss takes it
        self.smoothed = self.eps > 0

    @torch.no_grad()
    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple:
        """(loss (K,), log-probabilities (K, B, C)) of xb (K, B, F) with labels yb (K, B)."""
        k, n = yb.shape
        h, inputs, masks = xb, [], []
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            inputs.append(h)
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))  # (K, B, out)
            if i < last:
                h.relu_()
                if any(self.p):
                    mask = h.new_ones(h.shape)
                    for j, g in enumerate(self.drop_gens):  # nn.Dropout's draw, per variant
                        if self.p[j] > 0:
                            mask[j].bernoulli_(1 - self.p[j], generator=g).div_(1 - self.p[j])
                    h = h * mask
                    masks.append(mask)
                else:
                    masks.append(None)
        log_probs = torch.log_softmax(h, 2)  # (K, B, C)
        # The loss as alone: NLL of the log-probabilities, or with label smoothing
        # cross-entropy of them (which takes log_softmax again); the gradient through the same
        # kernels, so that the rounding is alone's too.
        classes = log_probs.shape[2]
        target = torch.zeros_like(log_probs).scatter_(2, yb.unsqueeze(2), 1.0)
        target = target * (1 - self.eps) + self.eps / classes  # label smoothing per variant
        again = torch.log_softmax(log_probs, 2)
        loss = torch.stack(  # (K,): each variant's reported loss by alone's kernel, so its
            [  # rounding (train_loss_sum) is alone's too and a resume alone continues it exactly
                F.cross_entropy(log_probs[k], yb[k], label_smoothing=self.smoothing[k])
                if self.smoothing[k] > 0
                else aten.nll_loss_forward(log_probs[k], yb[k], None, 1, -100)[0]  # mean
                for k in range(len(self.smoothing))
            ]
        )
        g = target.div_(-n)  # d loss / d again (K, B, C)
        if self.smoothed.any():
            smoothed = aten._log_softmax_backward_data(g, again, 2, torch.float32)
            g = torch.where(self.smoothed, smoothed, g)
        g = aten._log_softmax_backward_data(g, log_probs, 2, torch.float32)  # dL/dz (K, B, C)
        for i in range(last, -1, -1):
            torch.bmm(g.transpose(1, 2), inputs[i], out=self.wgrads[i])  # (K, out, in)
            torch.sum(g, 1, out=self.bgrads[i])
            if i > 0:
                g = torch.bmm(g, self.weights[i])  # dL/dh (K, B, in)
                if masks[i - 1] is not None:
                    g = g * masks[i - 1]
                g = aten.threshold_backward(g, inputs[i], 0)  # ReLU'
        return loss, log_probs

    def release(self) -> None:
        """Give each variant's parameters storage of their own again (out of the stack)."""
        for ls in self.linears:
            for m in ls:
                m.weight.data, m.bias.data = m.weight.data.clone(), m.bias.data.clone()
                m.weight.grad = m.bias.grad = None
