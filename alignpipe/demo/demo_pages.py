"""HTML pages of the demo mini-web (see `alignpipe.demo.demo_web` for what they hold).

Pages are plain, realistic HTML: a header with the site logo and navigation,
paragraphs, figures with `<img alt>` and `<figcaption>`, and a footer of links.
"""

from __future__ import annotations

import dataclasses
import html
import random

SECTIONS = ("shapes", "colours", "gallery", "blog")
PAGES_PER_SECTION = 12
PRIVATE_PAGES = 3
LOGO_SRC, LOGO_ALT = "/static/logo.png", "Shapes Gallery home"
PLACEHOLDER_SRC = "/static/placeholder.gif"
BROKEN_LINKS = tuple(f"/blog/old-post-{i}.html" for i in range(6))
OFF_HOST_LINKS = tuple(
    f"https://www.example.com/{p}"
    for p in (
        "about",
        "contact",
        "shop/circles",
        "shop/squares",
        "blog/2019/shapes",
        "privacy",
        "terms",
        "careers",
    )
)
TEXT_FILE_LINK = "/files/price-list.txt"
_SENTENCES = (
    "Simple shapes are the first things children learn to draw.",
    "This collection shows circles, squares, triangles, stars, rings and diamonds.",
    "Every picture was drawn by hand and coloured with care.",
    "Colours change how a shape feels: red is loud, blue is calm.",
    "Browse the gallery & find your favourite composition.",
    "Prints are available in several sizes for classrooms and offices.",
    "Our weekly post looks at how position changes a picture's balance.",
    "Shapes on the left lead the eye to the right.",
)


@dataclasses.dataclass(frozen=True)
class Img:
    """One `<img>` on a page.

    Attributes:
        kind: the demo category (`good`, `banner`, `no_alt`, ...).
        src: a site path (`images/00012.png`) or an absolute URL on another host.
        alt: the alt text; None writes no alt attribute.
        image_id: equal for showings of the same image (they go on different pages).
        lazy: written as `data-src` with a placeholder `src`.
    """

    kind: str
    src: str
    alt: str | None
    image_id: int | None = None
    lazy: bool = False


@dataclasses.dataclass(frozen=True)
class Page:
    path: str  # site path, e.g. "shapes/page-03.html"
    html: str


def site_pages(entries: list[Img], private_entries: list[Img], rng: random.Random) -> list[Page]:
    """Lays `entries` out on the content pages and writes every page of the site."""
    paths = [f"{s}/page-{k:02d}.html" for s in SECTIONS for k in range(1, PAGES_PER_SECTION + 1)]
    on_page = _distribute(entries, len(paths), rng)
    links: list[list[str]] = [[] for _ in paths]
    for i, link in enumerate(BROKEN_LINKS):
        links[i * 8 % len(paths)].append(link)
    for i, link in enumerate(OFF_HOST_LINKS):
        links[(i * 6 + 1) % len(paths)].append(link)
    pages = [_home_page()]
    for s in SECTIONS:
        extra = [TEXT_FILE_LINK] if s == "blog" else []
        children = [f"page-{k:02d}.html" for k in range(1, PAGES_PER_SECTION + 1)]
        pages.append(Page(f"{s}/index.html", _document(s.title(), children + extra, [], rng, base=None)))
    for i, path in enumerate(paths):
        section = path.split("/")[0]
        k = i % PAGES_PER_SECTION
        nav = [f"/{section}/page-{k:02d}.html"] if k > 0 else []
        nav += [f"/{section}/page-{k + 2:02d}.html"] if k + 1 < PAGES_PER_SECTION else []
        nav += ["/" + paths[rng.randrange(len(paths))] for _ in range(2)] + links[i]
        base = "/images/" if section == "gallery" else None
        title = f"{section.title()} {k + 1}"
        pages.append(Page(path, _document(title, nav, on_page[i], rng, base)))
    children = [f"page-{k}.html" for k in range(1, PRIVATE_PAGES + 1)]
    pages.append(Page("private/index.html", _document("Private", children, [], rng, base=None)))
    per_page = len(private_entries) // PRIVATE_PAGES
    for k in range(PRIVATE_PAGES):
        shown = private_entries[k * per_page : (k + 1) * per_page]
        pages.append(Page(f"private/page-{k + 1}.html", _document(f"Private {k + 1}", [], shown, rng, None)))
    return pages


def _distribute(entries: list[Img], n_pages: int, rng: random.Random) -> list[list[Img]]:
    """Deals shuffled entries round-robin; showings of one image land on different pages."""
    order = list(entries)
    rng.shuffle(order)
    pages: list[list[Img]] = [[] for _ in range(n_pages)]
    images_on: list[set[int]] = [set() for _ in range(n_pages)]
    for i, entry in enumerate(order):
        page = i % n_pages
        while entry.image_id is not None and entry.image_id in images_on[page]:
            page = (page + 1) % n_pages
        pages[page].append(entry)
        if entry.image_id is not None:
            images_on[page].add(entry.image_id)
    return pages


def _home_page() -> Page:
    links = [f"/{s}/" for s in SECTIONS] + ["/private/"]
    return Page("index.html", _document("Shapes Gallery", links, [], random.Random(0), base=None))


def _document(title: str, links: list[str], images: list[Img], rng: random.Random, base: str | None) -> str:
    head = f'<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
    if base:
        head += f'<base href="{base}">\n'
    nav = " | ".join(f'<a href="/{s}/">{s.title()}</a>' for s in SECTIONS)
    body = [
        f'<header><a href="/"><img src="{LOGO_SRC}" alt="{LOGO_ALT}" width="120" height="40"></a>',
        f"<nav>{nav}</nav></header>",
        f"<main>\n<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(' '.join(rng.sample(_SENTENCES, 3)))}</p>",
    ]
    for img in images:
        caption = html.escape(rng.choice(_SENTENCES))
        body.append(f"<figure>{_img_tag(img, rng, base)}<figcaption>{caption}</figcaption></figure>")
    body.append("</main>\n<footer><ul>")
    body += [f'<li><a href="{html.escape(link)}">{html.escape(_link_text(link))}</a></li>' for link in links]
    body.append("</ul><p>&copy; Shapes Gallery</p></footer>")
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n{head}</head>\n<body>\n'
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _link_text(link: str) -> str:
    name = link.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return name.replace("-", " ") or "home"


def _img_tag(img: Img, rng: random.Random, base: str | None) -> str:
    if "://" in img.src:
        src = img.src
    elif base and img.src.startswith(base.lstrip("/")):
        src = img.src[len(base) - 1 :]  # relative to <base href>
    elif base or rng.random() < 0.5:
        src = "/" + img.src
    else:
        src = "../" + img.src
    attrs = (
        f'src="{PLACEHOLDER_SRC}" data-src="{html.escape(src)}"' if img.lazy else f'src="{html.escape(src)}"'
    )
    if img.alt is not None:
        attrs += f' alt="{html.escape(img.alt)}"'
    return f'<img {attrs} loading="lazy">' if rng.random() < 0.3 else f"<img {attrs}>"
