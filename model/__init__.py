"""rnnlm.model: recurrent language models, from raw text to scores and samples.

    from rnnlm.model import Corpus, ModelConfig, TrainConfig, train, LanguageModel

    corpus = Corpus.from_file("corpus.txt")
    lm = train(corpus, ModelConfig(cell="gru", vocab_size=8000), TrainConfig(epochs=5))
    lm.score(["the cat sat on the mat ."])
    lm.generate(num_sentences=3, seed=1)
    lm.save("model.safetensors"); lm = LanguageModel.load("model.safetensors")

Knows nothing of gRPC or Redis. ``cell="rnn"`` needs NumPy only; ``gru``/``lstm`` need PyTorch.
"""

from rnnlm.model.checkpoint import CheckpointError
from rnnlm.model.config import ModelConfig, TrainConfig
from rnnlm.model.corpus import Corpus
from rnnlm.model.generation import GeneratedSentence, GenerationConfig, GenerationEvent
from rnnlm.model.gradient_flow import GradientFlow, gradient_flow
from rnnlm.model.lm import LanguageModel
from rnnlm.model.scoring import RankedScore, SentenceScore, TokenScore, Words
from rnnlm.model.state import TrainingState, WorkerLost
from rnnlm.model.text import Tokenizer
from rnnlm.model.training import ProgressEvent, evaluate, train
from rnnlm.model.vocab import SENTENCE_END, SENTENCE_START, UNKNOWN_TOKEN, Vocabulary

__all__ = [
    "SENTENCE_END",
    "SENTENCE_START",
    "UNKNOWN_TOKEN",
    "CheckpointError",
    "Corpus",
    "GeneratedSentence",
    "GenerationConfig",
    "GenerationEvent",
    "GradientFlow",
    "LanguageModel",
    "ModelConfig",
    "ProgressEvent",
    "RankedScore",
    "SentenceScore",
    "TokenScore",
    "Tokenizer",
    "TrainConfig",
    "TrainingState",
    "Vocabulary",
    "Words",
    "WorkerLost",
    "evaluate",
    "gradient_flow",
    "load",
    "train",
]

load = LanguageModel.load
