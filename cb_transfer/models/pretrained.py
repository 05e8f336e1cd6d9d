"""Pretrained weights for :class:`cb_transfer.ViT`: read a local file, convert it, load it strictly.

Accepted: .pth/.pt/.bin (read with ``torch.load(weights_only=True)``: files from outside are
untrusted) and .safetensors; timm, DeiT and CB key layouts (the same names: plain CB adds no keys,
the scaled variant adds ``blocks.N.cb.strength``); wrapped in ``model``/``state_dict``/``module``
and prefixed with ``module.`` or ``backbone.`` (a whole mmseg/mmdet checkpoint gives its
backbone). Classifier heads and DeiT's distillation token are dropped, the position embedding is
resized to the model's grid with timm's own ``checkpoint_filter_fn``. Any backbone weight that is
missing or mis-shaped stops the load with the names listed.

Every load logs, for humans, what it loaded, resized and dropped. Where the weights came from is
recorded as data by whoever runs the model (:func:`describe_weights`; a suite writes it into the
run's record), never read back from a log.
"""
import hashlib
import logging
import pickle
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log
from timm.models.vision_transformer import checkpoint_filter_fn

CONFIG_KEY = 'model.backbone.init_cfg.checkpoint'
WRAPPER_KEYS = ('state_dict', 'model', 'module')
# Keys of an ImageNet classifier that a backbone does not have.
CLASSIFIER_PREFIXES = ('head.', 'head_dist.', 'fc_norm.', 'pre_logits.')


def read_checkpoint(path: str):
    """The object a checkpoint file holds (tensors, dicts, mmengine's metadata), read safely."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(
            f"pretrained checkpoint '{path}' not found ({CONFIG_KEY}). The README's section "
            "'Pretrained weights' says where to get each file and how to check it; "
            'set model.backbone.init_cfg=None to train from scratch.')
    if file.suffix == '.safetensors':
        from safetensors.torch import load_file
        return load_file(str(file), device='cpu')
    try:
        # memory-mapped: the tensors a caller does not use (an optimizer's state) are never read
        return torch.load(file, map_location='cpu', weights_only=True,
                          mmap=zipfile.is_zipfile(file))
    except pickle.UnpicklingError as err:
        raise RuntimeError(
            f"refused to load '{path}' ({CONFIG_KEY}): it holds Python objects that torch's "
            f'weights-only loader does not allow, and a checkpoint from outside is untrusted. '
            f'Convert it to a plain state dict or .safetensors where it came from.\n{err}'
        ) from err


def state_dict_of(checkpoint, path: str, prefix: Optional[str]) -> Dict[str, torch.Tensor]:
    while isinstance(checkpoint, dict):
        key = next((k for k in WRAPPER_KEYS if isinstance(checkpoint.get(k), dict)), None)
        if key is None:
            break
        checkpoint = checkpoint[key]
    state = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"'{path}' ({CONFIG_KEY}) holds no tensors")

    if all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    if prefix is None and any(k.startswith('backbone.') for k in state):
        prefix = 'backbone.'
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise ValueError(f"'{path}' ({CONFIG_KEY}) has no keys under the prefix '{prefix}'")
    return state


def read_state_dict(path: str, prefix: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Read the tensors of a checkpoint file, unwrapped and without module/backbone prefixes.

    Args:
        path: A local .pth/.pt/.bin/.safetensors file.
        prefix: Keep only keys under this prefix, stripped (e.g. ``'backbone.'``). By default a
            checkpoint of a whole mmseg/mmdet/mmpretrain model gives its ``backbone.`` keys.
    """
    return state_dict_of(read_checkpoint(path), path, prefix)


def _pretrained_arm(checkpoint) -> Optional[str]:
    """The arm of the run that wrote the checkpoint (``'plain'``, ``'+CB(mlp)'``, ``'+reg4'``,
    ...), from the config mmengine stores in its checkpoints; None where there is none (a timm
    or DeiT file) or it no longer parses."""
    text = (checkpoint.get('meta') or {}).get('cfg') if isinstance(checkpoint, dict) else None
    if not isinstance(text, str):
        return None
    from mmengine.config import Config

    from ..experiment import arm_label, arm_options
    try:
        return arm_label(arm_options(Config.fromstring(text, '.py').to_dict()))
    except Exception:  # a config that no longer parses (an older stack, a missing base)
        return None


def model_arm(model: nn.Module) -> str:
    """The arm of a :class:`cb_transfer.ViT`, as :func:`~cb_transfer.experiment.arm_label`
    names the arm of a config."""
    from ..experiment import arm_label, arm_options
    layers = getattr(model, 'cb_layers', None)
    backbone = dict(cb=getattr(model, 'cb', False), cb_position=getattr(model, 'cb_position', None),
                    cb_scaled=getattr(model, 'cb_scaled', False),
                    cb_layers=None if layers is None or len(layers) == len(model.blocks)
                    else list(layers), timm_kwargs=getattr(model, 'timm_kwargs', None))
    return arm_label(arm_options(dict(model=dict(backbone=backbone))))


def describe_weights(path: str) -> dict:
    """Where a model's weights come from: file name, path, SHA-256 and, where the checkpoint
    tells, the arm it was pretrained as (the fields of :class:`cb_transfer.record.Weights`)."""
    with open(Path(path).expanduser(), 'rb') as f:
        sha256 = hashlib.file_digest(f, 'sha256').hexdigest()
    checkpoint = read_checkpoint(path)
    return dict(file=Path(path).name, path=str(path), sha256=sha256,
                pretrained_arm=_pretrained_arm(checkpoint))


def convert_to_vit(state: Dict[str, torch.Tensor],
                   model: nn.Module) -> Tuple[Dict[str, torch.Tensor], List[str], List[str]]:
    """Bring a timm/DeiT/CB state dict to ``model``'s keys and grid.

    Returns:
        (state dict, names dropped, notes on what was resized).
    """
    dropped = [k for k in state if k.startswith(CLASSIFIER_PREFIXES)]
    own = model.state_dict()
    if not any(k.startswith('norm.') for k in own):  # final_norm=False: no final norm here
        dropped += [k for k in state if k.startswith('norm.')]
    state = {k: v for k, v in state.items() if k not in dropped}
    if 'dist_token' in state:
        # distilled DeiT: position rows are (class, distillation, patches)
        dropped.append('dist_token')
        del state['dist_token']
        if 'pos_embed' in state:
            pos = state['pos_embed']
            state['pos_embed'] = torch.cat([pos[:, :1], pos[:, 2:]], dim=1)
    notes = []
    old_pos = state.get('pos_embed')
    state = checkpoint_filter_fn(state, model)
    if old_pos is not None and state['pos_embed'].shape != old_pos.shape:
        notes.append(f'pos_embed {tuple(old_pos.shape)} -> {tuple(state["pos_embed"].shape)} '
                     f'(grid {tuple(model.patch_embed.grid_size)})')
    return state, sorted(dropped), notes


def load_pretrained(model: nn.Module, path: str, prefix: Optional[str] = None) -> None:
    """Load a pretrained checkpoint into a :class:`cb_transfer.ViT`, refusing a partial load.

    The scaled CB strengths may be absent (a plain or plain-CB checkpoint): they keep their
    initial 0.5. Every other missing or mis-shaped weight, and any key the model does not have,
    raises with the names listed.
    """
    checkpoint = read_checkpoint(path)
    raw = state_dict_of(checkpoint, path, prefix)
    state, dropped, notes = convert_to_vit(raw, model)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith('.cb.strength')]
    unexpected = [k for k in state if k not in own]
    mis_shaped = [f'{k}: checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)}'
                  for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or mis_shaped:
        problems = [f'{title} ({len(names)}): {", ".join(names[:20])}'
                    + (' ...' if len(names) > 20 else '')
                    for title, names in (('missing', missing), ('unexpected', unexpected),
                                         ('mis-shaped', mis_shaped)) if names]
        raise RuntimeError(
            f"pretrained checkpoint '{path}' ({CONFIG_KEY}) does not fit cb_transfer.ViT("
            f"arch={getattr(model, 'arch', '?')!r}, "
            f"{getattr(model, 'num_layers', '?')} blocks):\n  "
            + '\n  '.join(problems))
    model.load_state_dict(state, strict=False)
    kept_init = [k for k in own if k not in state]
    print_log(
        f"loaded {len(state)} tensors from '{path}'"
        + (f'; resized {"; ".join(notes)}' if notes else '')
        + (f'; dropped {", ".join(dropped)}' if dropped else '')
        + (f'; kept the initial value of {len(kept_init)} CB strengths' if kept_init else ''),
        logger='current')
    pretrained, arm = _pretrained_arm(checkpoint), model_arm(model)
    if pretrained is not None and pretrained != arm:
        print_log(f"'{path}' was pretrained as {pretrained} and is loaded into a {arm} backbone: "
                  'the arms of a two-stage comparison each load the checkpoint of their own arm',
                  logger='current', level=logging.WARNING)
