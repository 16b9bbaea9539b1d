"""What a Docker-run task sees of this machine: the host paths its config names."""

from __future__ import annotations

from alignpipe.config import load_config
from pipelines.local import host_paths


def test_host_paths_are_the_work_folder_and_every_existing_path_the_config_names(tmp_path):
    work, evals, lists = tmp_path / "work", tmp_path / "evals", tmp_path / "lists"
    for folder in (work / "demo", evals / "flickr", evals / "imagenet"):
        folder.mkdir(parents=True)
    lists.mkdir()
    (lists / "urls.tsv").write_text("url\tcaption\n")
    cfg = load_config(
        overrides=[
            f"runner.work_dir={work}",
            f"eval.retrieval_sets=flickr={evals / 'flickr'},{work / 'demo'}",
            f"eval.classification_sets=in1k={evals / 'imagenet'}",
            f"scrape.input_paths={lists / 'urls.tsv'},{tmp_path / 'missing.tsv'},gs://bucket/urls.tsv",
            "scrape.source=url_list",
        ]
    )
    # outermost first, none inside another, nothing that does not exist, no URLs
    assert host_paths(cfg) == sorted(
        [str(evals / "flickr"), str(evals / "imagenet"), str(lists / "urls.tsv"), str(work)]
    )


def test_a_folder_and_one_inside_it_are_one_path(tmp_path):
    (tmp_path / "work" / "sets" / "a").mkdir(parents=True)
    cfg = load_config(
        overrides=[f"runner.work_dir={tmp_path}", f"eval.retrieval_sets=a={tmp_path / 'work' / 'sets' / 'a'}"]
    )
    assert host_paths(cfg) == [str(tmp_path)]
