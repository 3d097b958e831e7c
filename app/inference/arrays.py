"""The arrays passed from preprocessing through the batcher to the backends."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]  # model input: (3,S,S) per image, (N,3,S,S) per batch
ProbArray = npt.NDArray[np.float64]  # probabilities: (N,C) per batch, (C,) per image
RunBatch = Callable[[FloatArray], ProbArray]  # a model call: (N,3,S,S) -> (N,C)
