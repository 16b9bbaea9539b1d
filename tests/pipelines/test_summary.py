from pipelines.summary import format_summary


def test_the_index_stage_gets_its_lines_with_the_folder_to_serve():
    summary = {
        "pipeline_job": "align-1",
        "status": "FINISHED",
        "tracking_uri": "sqlite:///w/mlflow.db",
        "parent_run_id": "p",
        "stages": {
            "scrape": {"metrics": {"pairs_written": 10.0}, "tags": {}},
            "filter": {"metrics": {"kept_pairs": 8.0}, "tags": {}},
            "index": {
                "metrics": {"items": 5.0, "texts": 8.0, "images_embedded": 2.0},
                "tags": {"index_uri": "/w/index", "index_model_uri": "models:/align-dual-encoder/2"},
            },
        },
    }
    lines = format_summary(summary).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  index "))
    assert lines[at] == (
        "  index     5 images, 8 alt-texts (2 images newly embedded) by models:/align-dual-encoder/2"
    )
    assert lines[at + 1].strip() == "/w/index"
    serve = lines[-1].split()
    assert serve[:2] == ["Search", "it:"] and serve[3:10] == [
        "serve",
        "--model",
        "models:/align-dual-encoder/2",
        "--index",
        "/w/index",
        "--tracking-uri",
        "sqlite:///w/mlflow.db",
    ]
    del summary["stages"]["index"]  # index.enabled=false: no index lines
    assert not any(line.startswith("  index ") for line in format_summary(summary).splitlines())
