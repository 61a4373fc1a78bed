"""Weight spectra (depthprobe.weight_spectrum, depthprobe.torch.weight_spectra) against NumPy's
SVD and a NumPy implementation of the alignment written from its definition."""
import numpy as np
import pytest

import depthprobe


def numpy_spectrum(w, means=None):
    s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    out = {
        "singular_values": s,
        "numerical_rank": int((s > 1e-3 * s[0]).sum()),
        "stable_rank": float((s ** 2).sum() / s[0] ** 2),
        "effective_rank": float(np.exp(-(p := s[s > 0] / s[s > 0].sum()) @ np.log(p))),
    }
    if means is not None:
        c = means.shape[0]
        _, _, vt = np.linalg.svd(w.astype(np.float64), full_matrices=False)
        v = vt[:c].T                                   # top-C right singular vectors, in × C
        centred = (means - means.mean(0)).T            # in × C
        u, sm, _ = np.linalg.svd(centred, full_matrices=False)
        q = u[:, sm > 1e-10 * sm[0]]                   # orthonormal basis of the means' span
        cos = np.linalg.svd(v.T @ q, compute_uv=False)
        out["class_mean_alignment"] = float(np.minimum(cos, 1.0).mean())
    return out


def check(got, want):
    np.testing.assert_allclose(got["singular_values"], want["singular_values"], rtol=1e-9, atol=1e-12)
    assert got["numerical_rank"] == want["numerical_rank"]
    assert got["stable_rank"] == pytest.approx(want["stable_rank"], rel=1e-9)
    assert got["effective_rank"] == pytest.approx(want["effective_rank"], rel=1e-9)
    if "class_mean_alignment" in want:
        assert got["class_mean_alignment"] == pytest.approx(want["class_mean_alignment"], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("shape", [(64, 100), (100, 64), (10, 10)])
def test_random_weights_against_numpy(shape):
    rng = np.random.default_rng(sum(shape))
    w = rng.standard_normal(shape).astype(np.float32)
    means = rng.standard_normal((7, shape[1]))
    check(depthprobe.weight_spectrum(w), numpy_spectrum(w))
    check(depthprobe.weight_spectrum(w, means), numpy_spectrum(w, means))


def test_a_low_rank_weight_and_an_aligned_one():
    rng = np.random.default_rng(1)
    # Rank 5 exactly, and 3 more directions at 1e-4 of the largest: numerical rank 5.
    u, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    v, _ = np.linalg.qr(rng.standard_normal((60, 60)))
    s = np.zeros(40)
    s[:5] = [10, 8, 6, 4, 2]
    s[5:8] = 1e-3
    w = (u[:, :40] * s) @ v[:, :40].T
    got = depthprobe.weight_spectrum(w.astype(np.float32))
    assert got["numerical_rank"] == 5
    check(got, numpy_spectrum(w.astype(np.float32)))
    # Class means spread along W's top right singular directions: alignment 1; along directions
    # W does not read: about 0.
    means_on = rng.standard_normal((6, 5)) @ v[:, :5].T
    means_off = rng.standard_normal((6, 5)) @ v[:, 40:45].T
    assert depthprobe.weight_spectrum(w.astype(np.float32), means_on)["class_mean_alignment"] == pytest.approx(1.0, abs=1e-5)
    assert depthprobe.weight_spectrum(w.astype(np.float32), means_off)["class_mean_alignment"] < 1e-5


def test_bad_shapes_are_refused_by_name():
    with pytest.raises(depthprobe.DepthprobeError, match="2-D"):
        depthprobe.weight_spectrum(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(depthprobe.DepthprobeError, match="class_means has 4 columns, the weight 3"):
        depthprobe.weight_spectrum(np.ones((2, 3), np.float32), np.zeros((5, 4)))


def test_a_models_layers_linear_and_convolution():
    torch = pytest.importorskip("torch")
    from torch import nn

    import depthprobe.torch as dt

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    got = dt.weight_spectra(model)
    assert list(got) == ["0", "3"]
    conv = model[0].weight.detach().numpy().reshape(8, 27)
    check(got["0"], numpy_spectrum(conv))
    assert (got["0"]["rows"], got["0"]["cols"]) == (8, 27)
    check(got["3"], numpy_spectrum(model[3].weight.detach().numpy()))
    with pytest.raises(depthprobe.DepthprobeError, match="'1' has no weight"):
        dt.weight_spectra(model, ["1"])
