"""Backpropagation in a feed-forward network, with fastad computing the gradients.

A 2-16-1 multilayer perceptron with tanh hidden units classifies the "two moons" (a
dataset this script generates with numpy from a fixed seed).  In the lecture notes'
notation, for each data point:

    hidden units   a_j = sum_i w_ji z_i + b_j,     z_j = h(a_j) = tanh(a_j)
    output unit    a_k = sum_j w_kj z_j + b_k      (a logit; y = sigmoid(a_k))
    loss           L_n = softplus(a_k) - t_n a_k   (binary cross-entropy on the logit)

The gradient of the mean loss with respect to every weight -- the notes' backward pass,
delta_k = dL/da_k, delta_j = h'(a_j) sum_k w_kj delta_k, dL/dw_ji = delta_j z_i -- is
exactly what reverse mode computes: `fd.value_and_grad(loss)` records the forward pass
once as a tape and replays it, with its adjoint sweep, for every training step.  The
parameters are a dict (a pytree), and the gradient comes back as a dict of the same
shapes.  tests/oracle/test_mlp_backprop.py writes the notes' equations out by hand and checks that
fastad agrees to 1e-12.

Training is plain Adam written in numpy.  The script prints the loss as it goes and saves
a PNG of the decision boundary (if matplotlib is installed; otherwise it says so and
skips the plot).

    python examples/mlp_backprop.py                      # 2000 steps, mlp_backprop.png
    python examples/mlp_backprop.py --steps 300 --out /tmp/moons.png
"""
import argparse
import os
import sys
import time

import numpy as np

try:
    import fastad as fd
except ImportError:       # run from a source checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import fastad as fd


def make_moons(n=200, noise=0.1, seed=0):
    """Two interleaving half circles in the plane: inputs X (n, 2), labels t (n,) in {0, 1}."""
    rng = np.random.default_rng(seed)
    n1 = n // 2
    n2 = n - n1
    th1 = np.pi * rng.random(n1)
    th2 = np.pi * rng.random(n2)
    upper = np.column_stack([np.cos(th1), np.sin(th1)])
    lower = np.column_stack([1.0 - np.cos(th2), 0.5 - np.sin(th2)])
    X = np.vstack([upper, lower]) + noise * rng.standard_normal((n, 2))
    t = np.concatenate([np.zeros(n1), np.ones(n2)])
    return X, t


def init_params(n_in=2, n_hidden=16, n_out=1, seed=1):
    """Weights w_ji (rows: the unit at the output end, columns: the input end) and biases."""
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.standard_normal((n_hidden, n_in)) / np.sqrt(n_in),
        "b1": np.zeros(n_hidden),
        "W2": rng.standard_normal((n_out, n_hidden)) / np.sqrt(n_hidden),
        "b2": np.zeros(n_out),
    }


def forward(params, X):
    """The output logits a_k, shape (n, n_out).

    a_j = W1 z + b1, z_j = tanh(a_j), a_k = W2 z + b2.
    """
    a1 = X @ params["W1"].T + params["b1"]      # hidden pre-activations a_j
    z1 = np.tanh(a1)                            # hidden activations z_j = h(a_j)
    return z1 @ params["W2"].T + params["b2"]   # output pre-activations a_k (logits)


def softplus(a):
    """log(1 + e^a), without overflow for large |a|."""
    return np.maximum(a, 0.0) + np.log1p(np.exp(-np.abs(a)))


def loss(params, X, t):
    """Mean binary cross-entropy of sigmoid(a_k) against the labels t."""
    a = forward(params, X)[:, 0]
    return np.mean(softplus(a) - t * a)


def accuracy(params, X, t):
    return float(np.mean((forward(params, X)[:, 0] > 0) == (t > 0.5)))


def adam(params, grads, state, lr=0.01, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam step on a dict of arrays (numpy only)."""
    state["t"] += 1
    k = state["t"]
    new = {}
    for name in params:
        g = grads[name]
        m = state["m"][name] = b1 * state["m"][name] + (1 - b1) * g
        v = state["v"][name] = b2 * state["v"][name] + (1 - b2) * g * g
        mhat = m / (1 - b1 ** k)
        vhat = v / (1 - b2 ** k)
        new[name] = params[name] - lr * mhat / (np.sqrt(vhat) + eps)
    return new


def train(steps=2000, lr=0.02, n=200, hidden=16, seed=0, every=None, log=print):
    X, t = make_moons(n, seed=seed)
    params = init_params(n_hidden=hidden, seed=seed + 1)
    calls = [0]

    def counted_loss(params, X, t):             # counts how often loss's Python body runs
        calls[0] += 1
        return loss(params, X, t)

    vg = fd.value_and_grad(counted_loss)        # traced on the first call, replayed after
    state = {"t": 0, "m": {k: np.zeros_like(v) for k, v in params.items()},
             "v": {k: np.zeros_like(v) for k, v in params.items()}}
    every = every or max(1, steps // 10)
    history = []
    for step in range(steps + 1):
        value, grads = vg(params, X, t)
        history.append(value)
        if step % every == 0 or step == steps:
            log(f"step {step:5d}  loss {value:.6f}  accuracy {accuracy(params, X, t):.3f}")
        if step < steps:
            params = adam(params, grads, state, lr=lr)
    return params, X, t, history, calls[0]


def plot(params, X, t, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plot (pip install matplotlib)")
        return False
    x0, x1 = X[:, 0].min() - 0.5, X[:, 0].max() + 0.5
    y0, y1 = X[:, 1].min() - 0.5, X[:, 1].max() + 0.5
    gx, gy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    p = 1.0 / (1.0 + np.exp(-forward(params, grid)[:, 0].reshape(gx.shape)))
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.contourf(gx, gy, p, levels=20, cmap="RdBu_r", alpha=0.6)
    ax.contour(gx, gy, p, levels=[0.5], colors="k", linewidths=1.5)
    ax.scatter(X[:, 0], X[:, 1], c=t, cmap="RdBu_r", edgecolors="w", linewidths=0.5, s=22)
    ax.set_title("2-16-1 tanh MLP on two moons, trained with fastad gradients")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved the decision boundary to {path}")
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000, help="Adam steps (default 2000)")
    ap.add_argument("--lr", type=float, default=0.02, help="Adam learning rate")
    ap.add_argument("--n", type=int, default=200, help="data points")
    ap.add_argument("--hidden", type=int, default=16, help="hidden units")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="mlp_backprop.png", help="PNG of the decision boundary")
    args = ap.parse_args(argv)

    start = time.perf_counter()
    params, X, t, history, traced = train(args.steps, args.lr, args.n, args.hidden, args.seed)
    elapsed = time.perf_counter() - start
    print(f"final loss {history[-1]:.6f}  accuracy {accuracy(params, X, t):.3f}")
    print(f"{args.steps + 1} gradient evaluations in {elapsed:.2f} s; the loss's Python code "
          f"ran {traced} time(s), every other evaluation replayed its tape in C")
    plot(params, X, t, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
