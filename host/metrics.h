/* The benchmark metrics of aimc eval, in C, matching the reference
 * implementations (fixtures: scripts/make_metric_fixtures.py):
 *
 * VQA accuracy (OK-VQA, VizWiz) - the official VQA evaluation (vqaEval.py).
 *   Its public copies differ in what they normalise; metric_vqa_accuracy is
 *   the one OpenFlamingo's open_flamingo/eval/vqa_metric.py runs for OK-VQA
 *   and VizWiz (the VQA challenge server's version; aimc eval follows
 *   OpenFlamingo's protocol). For one question with n human answers (10 in
 *   VQA, OK-VQA and VizWiz):
 *     1. '\n' and '\t' become spaces and surrounding whitespace is stripped,
 *        in the prediction and in every answer;
 *     2. ONLY IF the answers are not all identical (after step 1), the
 *        prediction and the answers are normalised: processPunctuation, then
 *        processDigitArticle (below). When all annotators agree, the raw
 *        strings are compared: "Yes" scores 0 against ten "yes". This quirk
 *        is the official behaviour and is kept on purpose;
 *     3. acc = mean over i of min(1, #{j != i : answer_j == prediction} / 3).
 *        Answers are left out by position (VQA's carry unique answer_ids).
 *   metric_vqa_accuracy_variant also offers the two other published forms,
 *   same step 3:
 *     VQA_GT_VISION_LAB  GT-Vision-Lab/VQA's vqaEval.py (master): the
 *        prediction is always cleaned and normalised; the answers, untouched,
 *        get processPunctuation only when they are not all identical;
 *     VQA_VIZWIZ  vizwiz.org's evaluation script: the prediction is always
 *        cleaned and normalised; the answers are compared as they are.
 *   processPunctuation: each of  ; / [ ] " { } ( ) = + \ _ - > < @ ` , ? !
 *     is deleted when the text contains that character next to a space, or
 *     any digit-comma-digit, and becomes a space otherwise; then every '.'
 *     not followed by a digit is deleted - the first 32 only (the official
 *     code passes re.UNICODE where re.sub expects `count`). ':' and '\'' are
 *     kept. Digits are Unicode decimal digits (Python's \d).
 *   processDigitArticle: lowercase (Python str.lower), split on whitespace
 *     (str.split), map number words none/zero..ten to 0..10, drop a/an/the,
 *     expand the official contractions table ("dont" -> "don't"), join with
 *     single spaces.
 *   Known difference from Python: str.lower's context-dependent final sigma
 *   (a word-final capital sigma lowercases to U+03C2 in Python, U+03C3 here).
 *   Invalid UTF-8 bytes are read as U+FFFD.
 *
 * CIDEr-D - pycocoevalcap's Cider (cider_scorer.py): n-grams 1..4, document
 *   frequency of each n-gram = number of items whose references contain it,
 *   over the whole corpus added to the scorer; TF-IDF weight
 *   count * (log(#items) - log(max(1, df))); per n, the cosine of the
 *   candidate against each reference with the candidate's weights clipped by
 *   the reference's (min), times exp(-delta^2 / (2 * 6^2)); averaged over n
 *   and over the references, times 10; the corpus score is the mean of the
 *   per-item scores. As in pycocoevalcap, delta is the difference of the
 *   BIGRAM counts (its "length" counts 2-grams; this equals the difference of
 *   word counts except when a side is empty, where the score is 0 anyway).
 *
 *   Tokenization. pycocoevalcap runs Stanford CoreNLP 3.4.1's PTBTokenizer
 *   (-preserveLines -lowerCase) and deletes the tokens '' ' `` ` . ? ! , : -
 *   -- ... ; (its list also names -LRB- -RRB- -LCB- -RCB-, but the tokenizer
 *   has already lowercased them, so "(" survives as "-lrb-"). aimc needs no
 *   Java: metric_caption_tokenize reproduces that pipeline for ordinary
 *   text, in rules rather than PTB's full lexer:
 *   - lowercase (Unicode); curly quotes, en/em dashes and U+2026 read as
 *     their ASCII forms; Unicode spaces separate words;
 *   - ( ) [ ] { } become -lrb- -rrb- -lsb- -rsb- -lcb- -rcb-; $ % & and a '#'
 *     before a digit are split off as tokens; " ` ; and runs of 2+ '-' are
 *     deleted; ',' and ':' are deleted unless between two digits (1,000
 *     10:30); a run of 2+ '.' ends the word with one '.';
 *   - a trailing '.' is deleted unless the word is an abbreviation: a single
 *     letter ("a."), an acronym of single letters ("u.s.", "e.g.") or one of
 *     the 74 PTB keeps in every context (mr. dr. st. etc. jan. ft. ph.d. ...,
 *     list in metrics_cider.c);
 *   - runs of ? and ! at either end are split off and kept unless a lone ?
 *     or ! ("wow!!!" -> wow !!!); quotes and hyphens at either end are
 *     deleted ("-5" keeps its sign; 'em 'cause 'til 'n' '90s are words);
 *   - clitics are split (n't 's 'm 'd 'll 're 've: "can't've" -> ca n't 've),
 *     as are cannot gonna wanna gotta lemme gimme 'tis 'twas.
 *   Checked token for token against the real PTBTokenizer on 550+ strings
 *   (tests/fixtures/metrics/cider.json: captions, abbreviations in context,
 *   fuzzed punctuation). Known differences, where PTB's lexer decides from
 *   context or case: abbreviations outside the list ("no. 5", and "p."
 *   "tex." before a capital keep their period in PTB); "AT&T" in upper
 *   case stays one token in PTB; ",1,000" ":10:30" (punctuation glued
 *   before a number) stay whole in PTB; "1.5m" "5'10" "y'all" "rock'n'roll"
 *   "bird's-eye" "st.louis." ":)" are split differently; other ASCII
 *   symbols (* + = ^ | ~ \ @ /) stay inside words here.
 *
 * ROC-AUC (Hateful Memes) - sklearn.metrics.roc_auc_score for binary labels:
 *   the Mann-Whitney statistic, P(score_pos > score_neg) + P(tie) / 2. */
#ifndef AIMC_METRICS_H
#define AIMC_METRICS_H
#include <stdint.h>

/* ---- VQA ---- */
/* The official normalisation stages; each returns a malloc'd string. */
char *metric_vqa_process_punctuation(const char *text);
char *metric_vqa_process_digit_article(const char *text);
/* Both stages, punctuation first (what step 2 above applies). */
char *metric_vqa_normalize(const char *text);
/* One question's accuracy in [0, 1] (the official score is 100 x the mean
 * over questions), as OpenFlamingo computes it. n >= 1 answers (a question
 * without answers is a data error the caller reports; here it is an
 * internal check). */
double metric_vqa_accuracy(const char *pred, const char *const *gt_answers, int n);
typedef enum { VQA_OPENFLAMINGO = 0, VQA_GT_VISION_LAB = 1, VQA_VIZWIZ = 2 } vqa_variant;
double metric_vqa_accuracy_variant(const char *pred, const char *const *gt_answers, int n, vqa_variant variant);

/* ---- CIDEr-D ---- */
/* PTB-style caption tokenization (above): malloc'd, tokens joined by single
 * spaces, "" when nothing remains. */
char *metric_caption_tokenize(const char *text);

typedef struct cider_scorer cider_scorer;
cider_scorer *cider_new(void);
void cider_free(cider_scorer *s);
/* Adds one item: a generated caption and its n_refs >= 1 references, raw
 * text, tokenized with metric_caption_tokenize. */
void cider_add(cider_scorer *s, const char *candidate, const char *const *refs, int n_refs);
/* The same for text already tokenized: tokens separated by whitespace. */
void cider_add_tokenized(cider_scorer *s, const char *candidate, const char *const *refs, int n_refs);
int64_t cider_count(const cider_scorer *s);
/* Scores every item added so far against the document frequencies of all of
 * them: writes per_item[cider_count(s)] (when not NULL) and returns the mean
 * (NaN when no item was added). May be called again after more adds. */
double cider_compute(cider_scorer *s, double *per_item);

/* ---- ROC-AUC ---- */
/* labels are 0 or 1 (internal check). Returns NaN when the AUC is undefined:
 * n == 0, only one class present (sklearn raises ValueError there), or a NaN
 * score (sklearn rejects NaN input). */
double metric_roc_auc(const double *scores, const int *labels, int64_t n);
#endif
