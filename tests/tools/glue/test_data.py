"""Loading GLUE from glue_data folders (real shared files and tiny files) and from the hub."""

import datasets
import pytest

from optopass.tools.errors import DataError
from optopass.tools.glue import data
from optopass.tools.glue.data import default_glue_dir, glue_features, load_glue
from optopass.tools.glue.tasks import TASKS, get_task

# Data rows per file, from /work/shared/glue/SOURCES.md (header lines not counted).
SOURCE_ROWS = {
    "CoLA/train.tsv": 8551,
    "CoLA/dev.tsv": 1043,
    "SST-2/train.tsv": 67349,
    "SST-2/dev.tsv": 872,
    "MRPC/train.tsv": 3668,
    "MRPC/dev.tsv": 408,
    "STS-B/train.tsv": 5749,
    "STS-B/dev.tsv": 1500,
    "RTE/train.tsv": 2490,
    "RTE/dev.tsv": 277,
    "WNLI/train.tsv": 635,
    "WNLI/dev.tsv": 71,
    "QNLI/dev.tsv": 5463,
    "MNLI/dev_matched.tsv": 9815,
    "MNLI/dev_mismatched.tsv": 9832,
}

# task, split, first row as the hub's nyu-mll/glue gives it
HUB_FIRST_ROWS = [
    ("cola", "validation",
     {"sentence": "The sailors rode the breeze clear of the rocks.", "label": 1, "idx": 0}),
    ("sst2", "validation",
     {"sentence": "it 's a charming and often affecting journey . ", "label": 1, "idx": 0}),
    ("mrpc", "validation",
     {"sentence1": "He said the foodservice pie business doesn 't fit the company 's long-term "
                   "growth strategy .",
      "sentence2": '" The foodservice pie business does not fit our long-term growth strategy .',
      "label": 1, "idx": 0}),
    ("stsb", "validation",
     {"sentence1": "A man with a hard hat is dancing.",
      "sentence2": "A man wearing a hard hat is dancing.", "label": 5.0, "idx": 0}),
    ("qnli", "validation",
     {"question": "What came into force after the new constitution was herald?",
      "sentence": "As of that day, the new constitution heralding the Second Republic came into "
                  "force.", "label": 0, "idx": 0}),
    ("rte", "validation",
     {"sentence1": "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer "
                   "at age 44, according to the Christopher Reeve Foundation.",
      "sentence2": "Christopher Reeve had an accident.", "label": 1, "idx": 0}),
    ("wnli", "validation",
     {"sentence1": "The drain is clogged with hair. It has to be cleaned.",
      "sentence2": "The hair has to be cleaned.", "label": 0, "idx": 0}),
    ("mnli", "validation_matched",
     {"premise": "The new rights are nice enough",
      "hypothesis": "Everyone really likes the newest benefits ", "label": 1, "idx": 0}),
]

QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"


def _local_files():
    """(task, split, "Folder/file.tsv") for every file the task table knows."""
    for task in TASKS:
        for split, name in task.layout.files:
            yield task.name, split, f"{task.layout.folder}/{name}"


# --- the real files in the shared folder -------------------------------------------------------


def test_every_present_file_has_a_row_count_in_sources(real_glue_dir):
    present = {str(p.relative_to(real_glue_dir)) for p in real_glue_dir.glob("*/*.tsv")}
    assert present <= set(SOURCE_ROWS)
    assert present <= {relative for _, _, relative in _local_files()}


@pytest.mark.parametrize("task,split,relative", list(_local_files()))
def test_real_file_loads_with_the_row_count_of_sources(real_glue_dir, task, split, relative):
    if not (real_glue_dir / relative).is_file():
        pytest.skip(f"{relative} is not in the shared folder")
    dataset = load_glue(task, split, real_glue_dir)
    assert dataset.num_rows == SOURCE_ROWS[relative]
    assert dataset.features == glue_features(get_task(task))
    assert dataset["idx"][:3] == [0, 1, 2]


@pytest.mark.parametrize("task,split,first_row", HUB_FIRST_ROWS)
def test_real_file_gives_the_hub_first_row(real_glue_dir, task, split, first_row):
    assert load_glue(task, split, real_glue_dir)[0] == first_row


@pytest.mark.parametrize("split,counts", [
    ("validation_matched", [3479, 3123, 3213]),
    ("validation_mismatched", [3463, 3129, 3240]),
])
def test_mnli_label_counts_match_sources(real_glue_dir, split, counts):
    labels = load_glue("mnli", split, real_glue_dir)["label"][:]
    assert [labels.count(label) for label in range(3)] == counts


def test_stsb_rows_with_unbalanced_quotes_stay_one_row_each(real_glue_dir):
    dev = load_glue("stsb", "validation", real_glue_dir)
    assert dev[764]["sentence1"].startswith('"The grass family is one of')
    assert dev[764]["label"] == pytest.approx(1.4)
    assert dev[1025]["sentence1"] == (
        '"She was crying and scared,\' said Isa Yasin, the owner of the store.'
    )


def test_cola_without_header_keeps_its_first_line(real_glue_dir):
    train = load_glue("cola", "train", real_glue_dir)
    assert train[0]["sentence"].startswith("Our friends won't buy this analysis")


def test_mrpc_bom_header_is_read(real_glue_dir):
    dev = load_glue("mrpc", "validation", real_glue_dir)
    assert dev.column_names == ["sentence1", "sentence2", "label", "idx"]
    assert dev.features["label"].names == ["not_equivalent", "equivalent"]


# --- tiny files in tmp_path --------------------------------------------------------------------


def test_qqp_from_tiny_files(write_glue):
    glue_dir = write_glue("QQP", "dev.tsv", [
        QQP_HEADER,
        '0\t1\t2\tWhat is "love?\tWhat does love mean?\t1',
        "1\t3\t4\tHow to cook rice?\tIs the moon made of cheese?\t0",
    ])
    dev = load_glue("qqp", "validation", glue_dir)
    assert dev.column_names == ["question1", "question2", "label", "idx"]
    assert dev["question1"] == ['What is "love?', "How to cook rice?"]
    assert dev["label"][:] == [1, 0]
    assert dev.features["label"].names == ["not_duplicate", "duplicate"]


def test_labels_may_be_names_or_ids_and_blank_lines_are_skipped(write_glue):
    glue_dir = write_glue("RTE", "dev.tsv", [
        "index\tsentence1\tsentence2\tlabel",
        "0\ta\tb\tnot_entailment",
        "",
        "1\tc\td\t0",
    ])
    dev = load_glue("rte", "validation", glue_dir)
    assert dev["label"][:] == [1, 0]
    assert dev["idx"][:] == [0, 1]


def test_mnli_label_is_the_last_column_whatever_the_width(write_glue):
    header = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
              "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
              "sentence2", "label1", "gold_label"]
    row = ["0", "", "", "", "", "", "", "", "A premise.", "A hypothesis.", "neutral",
           "contradiction"]
    glue_dir = write_glue("MNLI", "train.tsv", ["\t".join(header), "\t".join(row)])
    train = load_glue("mnli", "train", glue_dir)
    assert train[0] == {"premise": "A premise.", "hypothesis": "A hypothesis.", "label": 2,
                        "idx": 0}


def test_stsb_label_is_a_float_score(write_glue):
    glue_dir = write_glue("STS-B", "dev.tsv", [
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
        '0\tg\tf\t2012\t0\tnone\tnone\t"Half quoted.\tOther.\t3.800',
    ])
    dev = load_glue("stsb", "validation", glue_dir)
    assert dev.features["label"] == datasets.Value("float32")
    assert dev[0]["sentence1"] == '"Half quoted.'
    assert dev[0]["label"] == pytest.approx(3.8)


def test_crlf_line_ends_are_accepted(write_glue):
    glue_dir = write_glue("SST-2", "dev.tsv", ["sentence\tlabel\r", "good .\t1\r"])
    assert load_glue("sst2", "validation", glue_dir)[0] == {"sentence": "good .", "label": 1,
                                                           "idx": 0}


# Each case: (folder, file, lines, task, split, error pattern).
BAD_DATA = [
    ("QQP", "dev.tsv", [QQP_HEADER, "0\t1\t2\ta?\tb?\t0", "1\t3\t4\tc?\t1"], "qqp", "validation",
     r"QQP/dev\.tsv:3: expected 6 tab-separated columns, found 5$"),
    ("QQP", "dev.tsv", [QQP_HEADER, "0\t1\t2\ta?\tb?\t0", "1\t3\t4\tc?\td?\tmaybe"], "qqp",
     "validation",
     r"QQP/dev\.tsv:3: unknown label 'maybe' in column 'is_duplicate'; "
     r"allowed: 0, 1, not_duplicate, duplicate$"),
    ("QQP", "dev.tsv", [], "qqp", "validation",
     r"QQP/dev\.tsv:1: empty file; expected a header line and tab-separated rows$"),
    ("QQP", "dev.tsv", [QQP_HEADER], "qqp", "validation",
     r"QQP/dev\.tsv:2: no data rows after the header$"),
    ("QQP", "dev.tsv", ["id\tqid1\tqid2\tquestion1\tquestion_2\tis_duplicate"], "qqp",
     "validation", r"QQP/dev\.tsv:1: header has no column 'question2'; found: id, qid1, "),
    ("CoLA", "train.tsv", ["gj04\t1\t\tFine.", "gj04\t1\tNo tab before the sentence."], "cola",
     "train", r"CoLA/train\.tsv:2: expected 4 tab-separated columns, found 3$"),
    ("CoLA", "train.tsv", ["gj04\t2\t\tFine."], "cola", "train",
     r"CoLA/train\.tsv:1: unknown label '2' in column 2; allowed: 0, 1, unacceptable, "),
    ("CoLA", "dev.tsv", [], "cola", "validation",
     r"CoLA/dev\.tsv:1: empty file; expected tab-separated rows$"),
    ("STS-B", "dev.tsv", ["index\tsentence1\tsentence2\tscore", "0\ta\tb\tfive"], "stsb",
     "validation", r"STS-B/dev\.tsv:2: label 'five' in column 'score' is not a finite number$"),
    ("SST-2", "dev.tsv", ["sentence\tlabel", "a\r b\t1"], "sst2", "validation",
     r"SST-2/dev\.tsv:2: carriage return inside a line"),
    ("SST-2", "train.tsv", ["sentence\tlabel", "a\t1"], "sst2", "validation",
     r"SST-2/dev\.tsv: file not found; split 'validation' of sst2 reads dev\.tsv$"),
    ("SST-2", "train.tsv", ["sentence\tlabel", "a\t1"], "rte", "validation",
     r"RTE: task folder not found; rte expects RTE/$"),
    ("SST-2", "dev.tsv", ["sentence\tlabel", "a\t1"], "sst2", "test",
     r"split 'test' of GLUE task 'sst2' has no file in glue_data; allowed: train, validation$"),
    ("MNLI", "dev_matched.tsv", ["a\tb"], "mnli", "validation",
     r"allowed: train, validation_matched, validation_mismatched$"),
]


@pytest.mark.parametrize("folder,name,lines,task,split,pattern", BAD_DATA)
def test_bad_data_raises_one_error_naming_file_and_line(
    write_glue, folder, name, lines, task, split, pattern
):
    glue_dir = write_glue(folder, name, lines)
    with pytest.raises(DataError, match=pattern):
        load_glue(task, split, glue_dir)


def test_invalid_utf8_names_the_line(write_glue):
    glue_dir = write_glue("SST-2", "dev.tsv", ["sentence\tlabel", "ok\t1"])
    with open(glue_dir / "SST-2" / "dev.tsv", "ab") as handle:
        handle.write(b"caf\xe9\t1\n")
    with pytest.raises(DataError, match=r"SST-2/dev\.tsv:3: not UTF-8 text \(byte 3\)$"):
        load_glue("sst2", "validation", glue_dir)


def test_missing_glue_dir(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: GLUE data folder not found$"):
        load_glue("sst2", "validation", tmp_path / "nowhere")


def test_unknown_task():
    with pytest.raises(DataError, match=r"unknown GLUE task 'sst-2'"):
        load_glue("sst-2", "validation", "/does/not/matter")


# --- the hub path ------------------------------------------------------------------------------


def test_hub_path_calls_load_dataset(monkeypatch):
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or "ds")
    assert load_glue("mnli", "validation_matched") == "ds"
    assert calls == [(("nyu-mll/glue", "mnli"), {"split": "validation_matched"})]


def test_hub_failure_says_to_pass_glue_dir(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach huggingface.co\nmore details")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=(
        r"cannot load nyu-mll/glue config 'sst2' split 'validation' from the Hugging Face hub "
        r"\(ConnectionError: Couldn't reach huggingface\.co\); pass --glue-dir"
    )):
        load_glue("sst2", "validation")


def test_hub_split_is_checked_before_any_download(monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", pytest.fail)
    with pytest.raises(DataError, match=r"unknown split 'dev' for GLUE task 'rte'; allowed: "
                                        r"train, validation, test$"):
        load_glue("rte", "dev")


# --- default_glue_dir --------------------------------------------------------------------------


def test_default_glue_dir_prefers_the_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTOPASS_GLUE_DIR", str(tmp_path / "mine"))
    assert default_glue_dir() == tmp_path / "mine"


def test_default_glue_dir_falls_back_to_shared_glue(monkeypatch, tmp_path):
    monkeypatch.delenv("OPTOPASS_GLUE_DIR", raising=False)
    monkeypatch.setattr(data, "_REPO_ROOT", tmp_path / "main")
    assert default_glue_dir() is None
    (tmp_path / "shared" / "glue").mkdir(parents=True)
    assert default_glue_dir() == tmp_path / "shared" / "glue"
