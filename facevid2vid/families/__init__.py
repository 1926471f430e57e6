"""Model families other than our own face-vid2vid networks, behind the same synthesis interface.

Each family is a package with a typed config and an ``nn.Module`` implementing
``encode_source`` / ``estimate_motion`` / ``render`` (docs/architecture.md), so
:class:`~facevid2vid.inference.Animator`, the codec and the pipelines use it unchanged.
:mod:`facevid2vid.families.registry` lists them and what each supports.
"""
FACEVID2VID = "facevid2vid"
LIVEPORTRAIT = "liveportrait"
FOMM = "fomm"
MONKEYNET = "monkeynet"
X2FACE = "x2face"
FAMILIES = (FACEVID2VID, LIVEPORTRAIT, FOMM, MONKEYNET, X2FACE)
