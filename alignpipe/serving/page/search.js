// The search page: sends the text and / or image to the server's JSON searches and shows the
// results. Everything it shows is set as text (never parsed as HTML): alt-texts come from the web.
"use strict";

const form = document.getElementById("search-form");
const textInput = document.getElementById("query-text");
const imageInput = document.getElementById("image-input");
const dropZone = document.getElementById("drop-zone");
const preview = document.getElementById("image-preview");
const dropHint = document.getElementById("drop-hint");
const clearImage = document.getElementById("clear-image");
const weights = document.getElementById("weights");
const textWeight = document.getElementById("text-weight");
const weightValue = document.getElementById("weight-value");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");
const resultsTitle = document.getElementById("results-title");
const nearestTexts = document.getElementById("nearest-texts");

let imageB64 = null; // the chosen image file, base64
let limits = { max_image_bytes: Infinity, max_text_chars: 1000 };
let pending = null; // the search in flight, aborted by a newer one

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function isWebUrl(url) {
  return /^https?:\/\//i.test(url || "");
}

function showWeights() {
  const t = Number(textWeight.value);
  weightValue.textContent = `image ${(1 - t).toFixed(2)} · text ${t.toFixed(2)}`;
  weights.hidden = !(imageB64 && textInput.value.trim());
}

function resultCard(hit) {
  const card = document.createElement("figure");
  card.className = "card";
  const img = document.createElement("img");
  img.src = hit.thumbnail;
  img.alt = hit.alt_texts[0] || "";
  img.loading = "lazy";
  card.append(img);
  const body = document.createElement("figcaption");
  body.className = "body";
  const alt = document.createElement("p");
  alt.className = "alt";
  alt.textContent = hit.alt_texts[0] || "(no alt-text)";
  const meta = document.createElement("div");
  meta.className = "meta";
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = `score ${hit.score.toFixed(3)}`;
  meta.append(score);
  if (isWebUrl(hit.page_url)) {
    const link = document.createElement("a");
    link.href = hit.page_url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.textContent = "source page";
    meta.append(link);
  }
  body.append(alt, meta);
  card.append(body);
  return card;
}

function textItem(hit) {
  const li = document.createElement("li");
  li.textContent = hit.text || hit.alt_texts[0] || "";
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  li.append(score);
  return li;
}

async function search() {
  const text = textInput.value.trim();
  if (!text && !imageB64) {
    setStatus("Type a query or choose an image.");
    return;
  }
  let kind = "text-to-images";
  const body = { k: 24 };
  if (text) body.text = text;
  if (imageB64) {
    body.image = { b64: imageB64 };
    kind = text ? "image-text-to-images" : "image-to-images";
  }
  if (text && imageB64) {
    body.text_weight = Number(textWeight.value);
    body.image_weight = 1 - body.text_weight;
  }
  if (pending) pending.abort();
  pending = new AbortController();
  setStatus("Searching…");
  try {
    const response = await fetch(`/search/${kind}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: pending.signal,
    });
    const answer = await response.json();
    if (!response.ok) {
      setStatus(answer.error || `the server answered ${response.status}`, true);
      return;
    }
    results.replaceChildren(...answer.results.map(resultCard));
    nearestTexts.replaceChildren(...(answer.nearest_texts || []).map(textItem));
    resultsTitle.textContent = `Images for ${kind.replaceAll("-", " ")}`;
    setStatus(`${answer.results.length} results`);
  } catch (e) {
    if (e.name !== "AbortError") setStatus(`search failed: ${e.message}`, true);
  }
}

function useImageFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    setStatus(`${file.name} is not an image`, true);
    return;
  }
  if (file.size > limits.max_image_bytes) {
    setStatus(`${file.name} is over the limit of ${limits.max_image_bytes} bytes`, true);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    const url = reader.result;
    imageB64 = url.slice(url.indexOf(",") + 1);
    preview.src = url;
    preview.hidden = false;
    clearImage.hidden = false;
    showWeights();
    search();
  };
  reader.readAsDataURL(file);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  search();
});
textInput.addEventListener("input", showWeights);
imageInput.addEventListener("change", () => useImageFile(imageInput.files[0]));
clearImage.addEventListener("click", () => {
  imageB64 = null;
  imageInput.value = "";
  preview.hidden = true;
  clearImage.hidden = true;
  showWeights();
});
let weightTimer = null;
textWeight.addEventListener("input", () => {
  showWeights();
  clearTimeout(weightTimer);
  weightTimer = setTimeout(search, 250);
});
for (const name of ["dragenter", "dragover"]) {
  dropZone.addEventListener(name, (event) => {
    event.preventDefault();
    dropZone.classList.add("dragging");
  });
}
for (const name of ["dragleave", "drop"]) {
  dropZone.addEventListener(name, () => dropZone.classList.remove("dragging"));
}
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  useImageFile(event.dataTransfer.files[0]);
});
dropHint.addEventListener("dragover", (event) => event.preventDefault());

fetch("/info")
  .then((response) => response.json())
  .then((info) => {
    limits = info.limits;
    textInput.maxLength = limits.max_text_chars;
    document.getElementById("index-info").textContent = info.items
      ? `${info.items} images indexed, ${info.dim}-dimensional embeddings`
      : "No index loaded: the server answers predictions only.";
  })
  .catch(() => setStatus("the server does not answer /info", true));
