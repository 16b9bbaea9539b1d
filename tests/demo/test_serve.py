import urllib.error
import urllib.request

import pytest

from alignpipe.demo.serve import serve_folder


def test_serve_folder_serves_files_and_404s(make_site):
    site = make_site({"index.html": "<p>hi</p>"})
    with serve_folder(site) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        assert urllib.request.urlopen(url + "index.html").read() == b"<p>hi</p>"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url + "missing.html")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "index.html", timeout=2)  # stopped
