"""Every registry in one place, for `vistage list` and params checking.

Importing this module imports the component modules, and so torch: keep it off the
`vistage --help` path.
"""

from .augment import AUGMENTATIONS
from .data.sources import SOURCES
from .losses import LOSSES
from .models import MODELS
from .optim import OPTIMIZERS, SCHEDULERS
from .vqa.sources import VQA_SOURCES
from .vqa.losses import VQA_LOSSES
from .vqa.model import FUSIONS, QUESTION_ENCODERS

# keyword in `vistage list KIND` -> registry
ALL = {
    "models": MODELS,
    "optimizers": OPTIMIZERS,
    "schedulers": SCHEDULERS,
    "losses": LOSSES,
    "augmentations": AUGMENTATIONS,
    "sources": SOURCES,
    "vqa_sources": VQA_SOURCES,
    "question_encoders": QUESTION_ENCODERS,
    "fusions": FUSIONS,
    "vqa_losses": VQA_LOSSES,
}
