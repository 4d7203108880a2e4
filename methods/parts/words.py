"""The closed list of function words that stands in for a part-of-speech tagger: SCN's masked-word selection and
SIL's content-first masking of L_word both call a word outside it a content word (one rule for the synthetic world and
real transcripts)."""

from __future__ import annotations

# Words of the Penn tags that the code's POS rule weights 1 (not NN*, VB*, JJ*, RB*): DT, PRP, PRP$, IN, TO, CC, MD,
# WDT, WP, POS. Auxiliaries (is, has) are VB* and adverbs (then, again, not, when) RB* or WRB: weighted 2.
_FUNCTION_TEXT = (
    "a an the this that these those some any another each every no all both his her its their my your our "
    "he she it they we i you him them me us who whom which what whose "
    "of in on at to from with by for into onto off up down over under about across through after before as than "
    "while until upon within without along around behind near beside between toward towards "
    "and or but nor so yet can could will would shall should may might must s"
)
FUNCTION_WORDS = frozenset(_FUNCTION_TEXT.split(" "))
