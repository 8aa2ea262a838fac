"""Adam without torch.optim: the fused kernel that `torch.optim.Adam(fused=True)` runs
(`torch._fused_adam_`, Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization"), called
directly, so the same numbers bit for bit, without what torch.optim costs around it.

    opt = Adam(model.parameters(), lr=0.003, weight_decay=0.0)
    loss.backward(); opt.step(); opt.zero_grad()      # as with torch.optim.Adam
    opt.param_groups[0]["lr"] = 0.001                 # a schedule sets it between steps
    opt.state_dict(), opt.load_state_dict(saved)      # torch.optim.Adam's format, both ways

Why: building any torch.optim optimizer imports `torch._dynamo` (its methods are wrapped so
that the compiler skips them), about as long as importing torch itself: ~2 s of CPU on this
2-core Intel machine, under load (benchmarks/README.md, issue 22), a third of `--preset fast`'s
5 s target; and each `step()` goes through Python bookkeeping (hooks, grouping the tensors by
device, graph breaks): 0.05-0.2 s of the notebook's ~1.8 s epoch at 1 thread here. Only what
quicknets uses is here: one group, float32 parameters on one device, no amsgrad, no maximize,
no gradient scaler (`--fp16` keeps torch.optim.Adam). StackedAdam steps K such optimizers of a
stack (training/stacked.py) without their Python, on stacked moments.
"""

import torch

# The hyperparameters torch.optim.Adam keeps in each group (its state_dict's "param_groups"),
# at its defaults apart from fused: the same dict either way round.
GROUP = {
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "amsgrad": False,
    "maximize": False,
    "foreach": None,
    "capturable": False,
    "differentiable": False,
    "fused": True,
    "decoupled_weight_decay": False,
}


class Adam:
    """Adam over `params` (float32 tensors on one CPU or CUDA device) with learning rate `lr`
    and L2 weight decay `weight_decay` (added to the gradient, as torch.optim.Adam does)."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        params = list(params)
        self.param_groups = [{"lr": lr, "weight_decay": weight_decay, **GROUP, "params": params}]
        self.defaults = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        self.state: dict = {}  # parameter -> {"step", "exp_avg", "exp_avg_sq"}

    def _state(self, p: torch.Tensor) -> dict:
        if p not in self.state:  # as torch.optim.Adam's first step makes it (fused)
            self.state[p] = {
                "step": torch.zeros((), dtype=torch.float32, device=p.device),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
        return self.state[p]

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient, with the group's lr now."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self._state(p) for p in params]
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            beta1, beta2 = group["betas"]
            torch._fused_adam_(
                params,
                [p.grad for p in params],
                [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states],
                [],  # max_exp_avg_sqs: amsgrad only
                steps,
                amsgrad=False,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad.zero_()

    def state_dict(self) -> dict:
        """torch.optim.Adam's state_dict: parameters numbered in order, state by number."""
        params = self.param_groups[0]["params"]
        return {
            "state": {i: dict(self.state[p]) for i, p in enumerate(params) if p in self.state},
            "param_groups": [
                {
                    **{k: v for k, v in self.param_groups[0].items() if k != "params"},
                    "params": list(range(len(params))),
                }
            ],
        }

    def load_state_dict(self, saved: dict) -> None:
        """Take over a state_dict of this class or of torch.optim.Adam (one group, the same
        parameters in the same order), its tensors copied to the parameters' device."""
        params = self.param_groups[0]["params"]
        (group,) = saved["param_groups"]
        if len(group["params"]) != len(params):
            raise ValueError(
                f"the saved optimizer holds {len(group['params'])} parameters, this one "
                f"{len(params)}"
            )
        number = {n: p for n, p in zip(group["params"], params)}

        def copied(p: torch.Tensor, key: str, value: torch.Tensor) -> torch.Tensor:
            dtype = torch.float32 if key == "step" else p.dtype  # fused Adam's step: float32
            return value.to(dtype=dtype, device=p.device).clone()

        self.state = {
            number[n]: {k: copied(number[n], k, v) for k, v in s.items()}
            for n, s in saved["state"].items()
        }
        self.param_groups[0].update({k: v for k, v in group.items() if k != "params"})


class StackedAdam:
    """The step of K variants' fused Adam optimizers (adam.Adam, torch.optim.Adam or AdamW with
    fused=True) without their Python:
    their moments become views into stacked tensors and torch's own fused kernel steps each
    variant's views, one call each, with its lr and weight decay. Each optimizer's state stays
    torch's, so its state_dict (the checkpoint) is a standalone run's; the numbers are the
    fused kernel's alone, bit for bit. None from `build` where it does not
    apply (another optimizer, amsgrad, differing betas): then each optimizer steps itself."""

    def __init__(self, opts: list, stack):
        self.opts = opts
        self.kernel = torch._fused_adamw_ if isinstance(opts[0], torch.optim.AdamW) else None
        self.kernel = self.kernel or torch._fused_adam_
        group = opts[0].param_groups[0]
        self.betas, self.eps = group["betas"], group["eps"]
        self.params = [*stack.weights, *stack.biases]  # stacked (K, ...) tensors
        self.grads = [*stack.wgrads, *stack.bgrads]
        views = [[*(m.weight for m in ls), *(m.bias for m in ls)] for ls in stack.linears]
        first = opts[0].state.get(views[0][0])
        self.steps = [  # one count per stacked tensor, shared by the variants' states
            torch.zeros((), dtype=torch.float32) if first is None else first["step"].clone()
            for _ in self.params
        ]
        self.moments = []
        for name in ("exp_avg", "exp_avg_sq"):
            stacked = [
                torch.stack(
                    [
                        o.state[v[i]][name] if o.state.get(v[i]) else torch.zeros_like(v[i])
                        for o, v in zip(opts, views)
                    ]
                )
                for i in range(len(self.params))
            ]
            self.moments.append(stacked)
        for k, (o, v) in enumerate(zip(opts, views)):
            for i, p in enumerate(v):
                o.state[p] = {
                    "step": self.steps[i],
                    "exp_avg": self.moments[0][i][k],
                    "exp_avg_sq": self.moments[1][i][k],
                }
        self.views = views
        self.per_variant = [  # variant k's (params, grads, exp_avgs, exp_avg_sqs) views
            [[t[k] for t in ts] for ts in (self.params, self.grads, *self.moments)]
            for k in range(len(opts))
        ]

    @staticmethod
    def build(opts: list, stack) -> "StackedAdam | None":
        kinds = {type(o) for o in opts}
        if len(kinds) > 1 or kinds - {Adam, torch.optim.Adam, torch.optim.AdamW}:
            return None  # Adam: make_optimizer's (adam.py), the same kernel and state
        groups = [o.param_groups for o in opts]
        if any(len(g) != 1 for g in groups):
            return None
        g0 = groups[0][0]
        for (g,) in groups:
            if not g["fused"] or g["amsgrad"] or g["maximize"]:
                return None
            if (g["betas"], g["eps"]) != (g0["betas"], g0["eps"]):
                return None
        return StackedAdam(opts, stack)

    def step(self) -> None:
        torch._foreach_add_(self.steps, 1)
        # One kernel call per variant, on its views: the same tensor sizes as alone, so the
        # same vectorised chunks and the same bits (one call over the stacked tensors rounds
        # some elements differently, and the runs then drift apart by ~0.002 accuracy).
        calls = [
            (*views, o.param_groups[0]["lr"], o.param_groups[0]["weight_decay"])
            for views, o in zip(self.per_variant, self.opts)
        ]
        b1, b2 = self.betas
        for params, grads, avgs, sqs, lr, wd in calls:
            self.kernel(
                params,
                grads,
                avgs,
                sqs,
                [],
                self.steps,
                amsgrad=False,
                lr=lr,
                beta1=b1,
                beta2=b2,
                weight_decay=wd,
                eps=self.eps,
                maximize=False,
            )

    def release(self) -> None:
        """Give each optimizer's state tensors of its own (before the stack is rebuilt)."""
        for o, v in zip(self.opts, self.views):
            for p in v:
                o.state[p] = {key: t.clone() for key, t in o.state[p].items()}
