"""Data: the embedded synthetic benchmark and the readers of the real data.

One module per source: ``synth`` (the generated default benchmark), ``tts`` (espeak-ng speech),
``activitynet`` (ActivityNet Captions / Speech annotations), ``c3d`` (video features), ``librispeech``,
``glove`` (word vectors), ``esc50`` (noise), ``wav2vec2`` (a local checkpoint directory); then
``features`` (wave, log-mel), ``augment`` (Table 7), ``loader`` (device-resident shared batches) and
``check`` (``bench data check``). Every reader raises :class:`bench.data.errors.DataError` on bad input.
"""
