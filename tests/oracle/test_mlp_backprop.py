"""The lecture notes' backpropagation, written out by hand, against fastad's reverse mode.

For a feed-forward network the notes give, per data point n:

    forward    a_j = sum_i w_ji z_i            z_j = h(a_j)
    errors     delta_k = dL_n/da_k                                  (output units)
    backward   delta_j = h'(a_j) sum_k w_kj delta_k                 (hidden units, reverse order)
    gradient   dL_n/dw_ji = delta_j z_i

The references below implement exactly these equations -- once as explicit loops over
units (no numpy linear algebra at all), once vectorized over the data -- with no fastad
involved, and fastad's gradient of the same loss must agree to 1e-12 (relative).  Biases
are weights from a unit whose activation is fixed at z = 1, so dL/db_j = delta_j.
"""
import importlib.util
import math
import os

import numpy as np
import pytest

import fastad as fd

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "examples", "mlp_backprop.py")

RTOL = 1e-12


def load_example():
    spec = importlib.util.spec_from_file_location("mlp_backprop_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def assert_grad_close(got, want, rtol=RTOL):
    """Elementwise relative agreement, |got - want| <= rtol |want|; an element that is
    itself tiny through cancellation (below 1e-3 of the block's largest) is held to
    rtol times 1e-3 of the block's scale instead."""
    got = np.asarray(got, dtype=float)
    want = np.asarray(want, dtype=float)
    assert got.shape == want.shape
    scale = max(np.max(np.abs(want)), 1e-300)
    bound = rtol * np.maximum(np.abs(want), 1e-3 * scale)
    bad = np.abs(got - want) > bound
    assert not bad.any(), (f"relative error {np.max(np.abs(got - want) / bound) * rtol:.3g} "
                           f"> {rtol:g}")


# --------------------------------------------------------------------------- loop form

def tanh_prime(a):
    return 1.0 - math.tanh(a) ** 2


def backprop_loops(layers, x, target, loss):
    """Gradient of one data point's loss, unit by unit with Python floats.

    layers: list of (W, b) as nested lists, W[j][i] = w_ji.  Hidden layers use h = tanh,
    the last layer is linear (its a_k are the network outputs).  loss is "mse"
    (L = 1/2 sum_k (a_k - t_k)^2, so delta_k = a_k - t_k) or "bce" (one logit,
    L = log(1 + e^a) - t a, so delta_k = sigmoid(a) - t)."""
    # forward propagation: keep every a_j and z_j
    zs = [list(x)]                       # z of the inputs are the inputs themselves
    acts = []
    for li, (W, b) in enumerate(layers):
        z_in = zs[-1]
        a = []
        for j in range(len(W)):
            s = b[j]
            for i in range(len(z_in)):
                s += W[j][i] * z_in[i]          # a_j = sum_i w_ji z_i (+ bias)
            a.append(s)
        acts.append(a)
        last = li == len(layers) - 1
        zs.append(a if last else [math.tanh(v) for v in a])      # z_j = h(a_j)
    out = acts[-1]
    # error evaluation at the output units: delta_k = dL/da_k
    if loss == "mse":
        value = 0.5 * sum((out[k] - target[k]) ** 2 for k in range(len(out)))
        delta = [out[k] - target[k] for k in range(len(out))]
    else:
        a = out[0]
        value = (max(a, 0.0) + math.log1p(math.exp(-abs(a)))) - target[0] * a
        delta = [1.0 / (1.0 + math.exp(-a)) - target[0]]
    # backward propagation, layers in reverse order
    grads = [None] * len(layers)
    for li in range(len(layers) - 1, -1, -1):
        W, b = layers[li]
        z_in = zs[li]
        # dL/dw_ji = delta_j z_i ; dL/db_j = delta_j
        gW = [[delta[j] * z_in[i] for i in range(len(z_in))] for j in range(len(W))]
        gb = [delta[j] for j in range(len(W))]
        grads[li] = (gW, gb)
        if li > 0:
            a_prev = acts[li - 1]
            # delta_j = h'(a_j) sum_k w_kj delta_k
            delta = [tanh_prime(a_prev[j]) * sum(W[k][j] * delta[k] for k in range(len(W)))
                     for j in range(len(a_prev))]
    return value, grads


def mean_backprop_loops(layers, X, T, loss):
    total, acc = 0.0, None
    for x, t in zip(X, T):
        v, g = backprop_loops(layers, x, t, loss)
        total += v
        if acc is None:
            acc = g
        else:
            acc = [([[p + q for p, q in zip(r1, r2)] for r1, r2 in zip(gW, hW)],
                    [p + q for p, q in zip(gb, hb)]) for (gW, gb), (hW, hb) in zip(acc, g)]
    n = len(X)
    return total / n, [([[v / n for v in row] for row in gW], [v / n for v in gb])
                       for gW, gb in acc]


def net_fastad(layers, X, T, loss):
    """The same network and loss for fastad, as ordinary numpy (layers: list of (W, b))."""
    z = X
    for li, (W, b) in enumerate(layers):
        a = z @ W.T + b
        z = a if li == len(layers) - 1 else np.tanh(a)
    if loss == "mse":
        return np.mean(0.5 * np.sum((z - T) ** 2, axis=1))
    a = z[:, 0]
    t = T[:, 0]
    return np.mean(np.maximum(a, 0.0) + np.log1p(np.exp(-np.abs(a))) - t * a)


def random_net(sizes, rng):
    return [(rng.standard_normal((m, n)) / math.sqrt(n), 0.1 * rng.standard_normal(m))
            for n, m in zip(sizes[:-1], sizes[1:])]


@pytest.mark.parametrize("sizes,loss", [((2, 3, 1), "mse"), ((3, 4, 2), "mse"),
                                        ((2, 5, 3, 1), "mse"), ((2, 4, 1), "bce"),
                                        ((4, 3, 3, 1), "bce")])
def test_loop_backprop_matches_fastad(sizes, loss):
    rng = np.random.default_rng(sum(sizes) + len(loss))
    layers = random_net(sizes, rng)
    N = 7
    X = rng.standard_normal((N, sizes[0]))
    if loss == "mse":
        T = rng.standard_normal((N, sizes[-1]))
    else:
        T = (rng.random((N, 1)) > 0.5).astype(float)
    as_lists = [(W.tolist(), b.tolist()) for W, b in layers]
    ref_value, ref = mean_backprop_loops(as_lists, X.tolist(), T.tolist(), loss)

    value, grads = fd.value_and_grad(net_fastad)(layers, X, T, loss)
    # the gradient has the parameters' structure: a list of (W, b) tuples
    assert isinstance(grads, list) and len(grads) == len(layers)
    assert all(isinstance(g, tuple) and len(g) == 2 for g in grads)
    assert value == pytest.approx(ref_value, rel=RTOL)
    for (gW, gb), (rW, rb), (W, b) in zip(grads, ref, layers):
        assert gW.shape == W.shape and gb.shape == b.shape
        assert_grad_close(gW, rW)
        assert_grad_close(gb, rb)


def test_loop_reference_agrees_with_central_differences():
    """The hand-written reference is itself right (checked loosely, by finite differences)."""
    rng = np.random.default_rng(5)
    layers = random_net((2, 3, 2), rng)
    X = rng.standard_normal((4, 2))
    T = rng.standard_normal((4, 2))
    as_lists = [(W.tolist(), b.tolist()) for W, b in layers]
    _, ref = mean_backprop_loops(as_lists, X.tolist(), T.tolist(), "mse")
    h = 1e-6
    for li, (W, _b) in enumerate(layers):
        for j in range(W.shape[0]):
            for i in range(W.shape[1]):
                plus = [(w.copy(), c.copy()) for w, c in layers]
                minus = [(w.copy(), c.copy()) for w, c in layers]
                plus[li][0][j, i] += h
                minus[li][0][j, i] -= h
                fd_est = (net_fastad(plus, X, T, "mse") - net_fastad(minus, X, T, "mse")) / (2 * h)
                assert fd_est == pytest.approx(ref[li][0][j][i], rel=1e-6, abs=1e-8)


# ------------------------------------------------------------------- the example's network

def backprop_vectorized(params, X, t):
    """The notes' equations for the example's 2-16-1 network, vectorized over data points
    (row n of each matrix is data point n); the mean over the N points is taken at the end."""
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    N = X.shape[0]
    a1 = X @ W1.T + b1                  # a_j = sum_i w_ji x_i + b_j
    z1 = np.tanh(a1)                    # z_j = h(a_j)
    a2 = z1 @ W2.T + b2                 # a_k = sum_j w_kj z_j + b_k
    a = a2[:, 0]
    value = np.mean(np.maximum(a, 0) + np.log1p(np.exp(-np.abs(a))) - t * a)
    delta_k = ((1.0 / (1.0 + np.exp(-a)) - t) / N)[:, None]      # dL/da_k, (N, 1)
    delta_j = (1.0 - z1 ** 2) * (delta_k @ W2)                    # h'(a_j) sum_k w_kj delta_k
    return value, {
        "W2": delta_k.T @ z1,           # sum_n delta_k z_j
        "b2": delta_k.sum(axis=0),
        "W1": delta_j.T @ X,            # sum_n delta_j x_i
        "b1": delta_j.sum(axis=0),
    }


def test_example_network_gradient_matches_hand_backprop():
    ex = load_example()
    X, t = ex.make_moons(200, seed=0)
    params = ex.init_params(seed=1)
    vg = fd.value_and_grad(ex.loss)
    rng = np.random.default_rng(2)
    for _trial in range(3):        # the first call traces, the others replay new weights
        value, grads = vg(params, X, t)
        ref_value, ref = backprop_vectorized(params, X, t)
        assert value == pytest.approx(ref_value, rel=RTOL)
        assert set(grads) == set(params)
        for name in params:
            assert grads[name].shape == params[name].shape
            assert grads[name].dtype == np.float64
            assert_grad_close(grads[name], ref[name])
        params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in params.items()}


def test_example_vectorized_reference_equals_loop_reference():
    """The vectorized reference and the unit-by-unit loops are the same equations."""
    ex = load_example()
    X, t = ex.make_moons(12, seed=3)
    params = ex.init_params(n_hidden=5, seed=4)
    params["b1"] = np.linspace(-0.2, 0.3, 5)
    params["b2"] = np.array([0.1])
    _, vec = backprop_vectorized(params, X, t)
    layers = [(params["W1"].tolist(), params["b1"].tolist()),
              (params["W2"].tolist(), params["b2"].tolist())]
    _, loops = mean_backprop_loops(layers, X.tolist(), [[v] for v in t], "bce")
    assert_grad_close(vec["W1"], loops[0][0], 1e-13)
    assert_grad_close(vec["b1"], loops[0][1], 1e-13)
    assert_grad_close(vec["W2"], loops[1][0], 1e-13)
    assert_grad_close(vec["b2"], loops[1][1], 1e-13)


def test_training_with_fastad_gradients_reduces_the_loss():
    ex = load_example()
    lines = []
    params, X, t, history, traced = ex.train(steps=150, log=lines.append)
    assert history[-1] < 0.5 * history[0]
    assert traced == 1          # the loss's Python code ran once; every step replayed
    assert lines and lines[0].startswith("step     0")
