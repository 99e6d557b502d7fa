"""How close an artifact's logits must be to the reference, per weight encoding.

float32 and 1-bit artifacts (packed, .bwn, or "1-bit": a training checkpoint
binarised as trained) compute the same arithmetic as the reference up
to summation order: float32 rounding over WRN-20-10's ~5,800-term dot products
and 19 layers stays orders of magnitude below 1e-4 on logits of size ~10, so
1e-4 catches any real error (a flipped sign bit moves a logit by ~1e-2 or more).
float16 stores weights and computes in half precision (11-bit mantissa), so
its logits move by ~1e-2; it is held to a bound on the logit error plus an
argmax agreement floor.
"""

from __future__ import annotations

#: max |logit - reference logit| allowed, by weight encoding
MAX_ABS_LOGIT_DIFF = {"float32": 1e-4, "1-bit": 1e-4, "packed": 1e-4, "bwn": 1e-4, "float16": 0.25}
#: minimum fraction of top-1 predictions identical to the reference
MIN_AGREEMENT = {"float32": 1.0, "1-bit": 1.0, "packed": 1.0, "bwn": 1.0, "float16": 0.99}
