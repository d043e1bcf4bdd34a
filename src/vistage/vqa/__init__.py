"""Visual question answering, text side: answer normalization and the official VQA accuracy
(answers.py), and question tokenization and vocabulary (questions.py).

Pure Python and numpy, no torch: the data, training and evaluation stages build on these, and
both vocabularies serialize to plain lists so they can live inside a checkpoint.
"""
