"""rnnlm.model: recurrent language models, from raw text to scores and samples.

    from rnnlm.model import Corpus, ModelConfig, TrainConfig, train, LanguageModel

    corpus = Corpus.from_file("corpus.txt")
    lm = train(corpus, ModelConfig(cell="gru", vocab_size=8000), TrainConfig(epochs=5))
    lm.score(["the cat sat on the mat ."])
    lm.generate(num_sentences=3, seed=1)
    lm.save("model.safetensors"); lm = LanguageModel.load("model.safetensors")

Knows nothing of gRPC or Redis. ``cell="rnn"`` needs NumPy only; ``gru``/``lstm`` need PyTorch.
"""

from .checkpoint import CheckpointError
from .config import ModelConfig, TrainConfig
from .corpus import Corpus
from .generation import GeneratedSentence, GenerationConfig, GenerationEvent
from .lm import LanguageModel
from .scoring import SentenceScore, TokenScore
from .text import Tokenizer
from .training import ProgressEvent, TrainingState, evaluate, train
from .vocab import SENTENCE_END, SENTENCE_START, UNKNOWN_TOKEN, Vocabulary

__all__ = [
    "SENTENCE_END",
    "SENTENCE_START",
    "UNKNOWN_TOKEN",
    "CheckpointError",
    "Corpus",
    "GeneratedSentence",
    "GenerationConfig",
    "GenerationEvent",
    "LanguageModel",
    "ModelConfig",
    "ProgressEvent",
    "SentenceScore",
    "TokenScore",
    "Tokenizer",
    "TrainConfig",
    "TrainingState",
    "Vocabulary",
    "evaluate",
    "load",
    "train",
]

load = LanguageModel.load
