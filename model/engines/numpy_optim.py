"""SGD, RMSprop, Adam and AdamW for NumPy parameters, with the same update rules (and
defaults) as ``torch.optim`` so that both engines train alike. ``weight_decay`` is an L2 term
added to the gradient, as torch's ``weight_decay`` is, except for AdamW, which shrinks the
weights directly (decoupled decay, Loshchilov & Hutter 2019)."""

from __future__ import annotations

import numpy as np

RMSPROP_DECAY = 0.9  # the tutorial's GRU part uses 0.9; torch.optim.RMSprop is given alpha=0.9
EPS = 1e-8
ADAM_BETAS = (0.9, 0.999)


class NumpyOptimizer:
    """Updates a dict of arrays in place from a dict of gradients of the same shapes."""

    slots: tuple[str, ...] = ()
    decoupled_decay = False  # True: decay the weights, not the gradient (AdamW)

    def __init__(
        self, params: dict[str, np.ndarray], learning_rate: float, weight_decay: float = 0.0
    ) -> None:
        self.params = params
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.steps = 0
        self.state = {slot: {k: np.zeros_like(p) for k, p in params.items()} for slot in self.slots}

    def update(self, grads: dict[str, np.ndarray]) -> None:
        self.steps += 1
        for name, grad in grads.items():
            param = self.params[name]
            if self.weight_decay and self.decoupled_decay:
                param *= 1 - self.learning_rate * self.weight_decay
            elif self.weight_decay:
                grad = grad + self.weight_decay * param  # a new array: grads stay as given
            self._update_one(name, param, grad)

    def _update_one(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        out = {
            f"{slot}.{name}": arr for slot, arrs in self.state.items() for name, arr in arrs.items()
        }
        out["steps"] = np.array([self.steps], dtype=np.int64)
        return out

    def load_state_dict(self, tensors: dict[str, np.ndarray]) -> None:
        for slot, arrs in self.state.items():
            for name, arr in arrs.items():
                key = f"{slot}.{name}"
                if key not in tensors or tensors[key].shape != arr.shape:
                    raise ValueError(f"optimizer state {key!r} is missing or has the wrong shape")
                arr[...] = tensors[key]
        self.steps = int(tensors["steps"][0]) if "steps" in tensors else 0


class SGD(NumpyOptimizer):
    def _update_one(self, name, param, grad):
        param -= self.learning_rate * grad


class RMSprop(NumpyOptimizer):
    slots = ("square_avg",)

    def _update_one(self, name, param, grad):
        avg = self.state["square_avg"][name]
        avg *= RMSPROP_DECAY
        avg += (1 - RMSPROP_DECAY) * grad * grad
        param -= self.learning_rate * grad / (np.sqrt(avg) + EPS)


class Adam(NumpyOptimizer):
    slots = ("exp_avg", "exp_avg_sq")

    def _update_one(self, name, param, grad):
        beta1, beta2 = ADAM_BETAS
        m, v = self.state["exp_avg"][name], self.state["exp_avg_sq"][name]
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        step_size = self.learning_rate / (1 - beta1**self.steps)
        denom = np.sqrt(v / (1 - beta2**self.steps)) + EPS
        param -= step_size * m / denom


class AdamW(Adam):
    decoupled_decay = True


OPTIMIZER_CLASSES = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}
