"""Converters of other projects' checkpoints into ours (docs/checkpoints.md).

Each reads a third party's files without running their code (``torch.load(weights_only=True)``
only) and writes one of our safetensors checkpoints through :func:`facevid2vid.checkpoint.save_checkpoint`.
Modules are imported by the command that needs them: ``open_fv2v`` (the open face-vid2vid
reimplementation's Vox-256 checkpoints) and ``liveportrait``.
"""
