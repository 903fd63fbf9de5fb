"""Hand models: MANO through smplx (official pickle without chumpy, or npz) and the builtin hand.

Use :func:`load_hand_model`; conventions (flat-hand axis-angle, canonical 21 joints, right hand)
are in the README ("The hand layer").
"""

from pipeline.hand.model import HandModel, load_hand_model

__all__ = ["HandModel", "load_hand_model"]
