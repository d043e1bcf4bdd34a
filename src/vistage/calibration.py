"""Post-hoc temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", 2017).

One scalar T, fitted on the validation split's logits by minimising the negative log-likelihood
of softmax(logits / T). Dividing every logit by the same T never changes the top-1 class, only
how sure the probabilities say the model is: T > 1 softens an over-confident model, T < 1
sharpens an under-confident one (label smoothing leaves models under-confident). The NLL is
convex in 1/T, so a bounded scalar search over log T finds its minimum.

T is bounded to [0.1, 10]: a model that gets every validation image right would otherwise be
pushed towards T = 0 (certainty), which no test set justifies.
"""

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

BOUNDS = (0.1, 10.0)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of `labels` under softmax(logits / temperature), in float64."""
    log_probs = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in BOUNDS that minimises the NLL of `labels` (class indices) under softmax(logits / T),
    rounded to 4 decimals (the same logits give the same T on every machine); 1.0 without rows."""
    labels = np.asarray(labels, np.int64)
    if not len(labels):
        return 1.0
    result = minimize_scalar(lambda log_t: nll(logits, labels, float(np.exp(log_t))), bounds=np.log(BOUNDS),
                             method="bounded", options={"xatol": 1e-5})
    return round(float(np.exp(result.x)), 4)
