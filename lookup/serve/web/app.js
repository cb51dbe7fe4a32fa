// The orthovec lookup page. Plain browser JavaScript, no framework or build step: it must run from
// the installed package on machines without internet. Every number it shows comes from the JSON
// API of the server that served it (GET /atlas, /genes, /homologs, /mappings, POST /homologs/sequence),
// and every error is the API's own `detail`, which carries the CLI's words.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "orthovec-api-key";
// Columns every hit has; anything else a hit carries (e.g. alignment identity/coverage) is shown
// after them when at least one hit has a value for it.
const HIT_COLUMNS = ["species", "gene_id", "gene_symbol", "score", "rank", "is_rbh", "margin"];
const HIT_LABELS = {
  species: "Species", gene_id: "Gene ID", gene_symbol: "Symbol", score: "Score", rank: "Rank",
  is_rbh: "Reciprocal best hit", margin: "Margin",
  identity: "Identity", coverage_query: "Query coverage", coverage_target: "Hit coverage",
};
const MAPPING_FIRST = ["gene_symbol_a", "gene_id_a", "gene_symbol_b", "gene_id_b", "score", "relation"];

let atlas = null;      // GET /atlas
let shown = null;      // {name, columns, rows} of the table on screen, for the downloads
let mappingOffset = 0;

class ApiError extends Error {}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function detailText(body, status) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    // FastAPI's validation list: name the field and say what is wrong with it.
    return body.detail.map((d) => `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`).join("; ");
  }
  return `The server answered ${status}.`;
}

async function api(path, params, init) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of params || []) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.append(name, value);
  }
  const headers = Object.assign({}, (init && init.headers) || {});
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(url, Object.assign({}, init || {}, { headers }));
  const body = await response.json().catch(() => null);
  if (response.status === 401) {
    $("key-form").hidden = false;
    $("api-key").focus();
    throw new ApiError(key ? "The API key was not accepted; enter it again." : "This server needs an API key.");
  }
  if (!response.ok) throw new ApiError(detailText(body, response.status));
  return body;
}

function currentModel() {
  return atlas.models.find((m) => m.model === $("model").value) || atlas.models[0];
}

function option(select, value, label) {
  const item = document.createElement("option");
  item.value = value;
  item.textContent = label === undefined ? value : label;
  select.append(item);
}

function fillSpecies() {
  const model = currentModel();
  const from = $("from-species");
  const to = $("to-species");
  const keepFrom = from.value;
  from.replaceChildren();
  to.replaceChildren();
  option(to, "", "all other species");
  for (const s of model.species) {
    option(from, s.species, `${s.species} (${s.genes.toLocaleString()} genes)`);
    option(to, s.species);
  }
  if (keepFrom) from.value = keepFrom;
  const pairs = $("mapping-pair");
  pairs.replaceChildren();
  for (const m of model.mappings) option(pairs, `${m.species_a}/${m.species_b}`, `${m.species_a} → ${m.species_b}`);
  $("no-mappings").hidden = model.mappings.length > 0;
  $("mapping-form").hidden = model.mappings.length === 0;
}

function renderProvenance() {
  const footer = $("provenance");
  footer.replaceChildren();
  const intro = document.createElement("p");
  intro.textContent = `orthovec ${atlas.orthovec} · store: ${atlas.store} · sequence queries ${
    atlas.sequence_queries ? "on" : "off (server started without --weights)"}`;
  footer.append(intro);
  for (const m of atlas.models) {
    const line = document.createElement("p");
    const sha = m.weights_sha256 ? `weights sha256 ${m.weights_sha256}` : "weights sha256 unknown";
    const settings = [
      m.layer !== null ? `layer ${m.layer}` : null,
      m.pooling ? `${m.pooling} pooling` : null,
      m.precision,
      m.long_seqs ? `long sequences: ${m.long_seqs}` : null,
    ].filter(Boolean).join(", ");
    const species = m.species.map((s) => `${s.species} ${s.genes.toLocaleString()}`).join(", ");
    const genes = m.species.reduce((sum, s) => sum + s.genes, 0);
    line.textContent = `Model ${m.model} (${sha}${settings ? "; " + settings : ""}): ` +
      `${m.species.length} species, ${genes.toLocaleString()} genes (${species}).`;
    footer.append(line);
  }
}

async function loadAtlas() {
  atlas = await api("atlas");
  $("key-form").hidden = true;
  const models = $("model");
  models.replaceChildren();
  for (const m of atlas.models) option(models, m.model);
  $("model-field").hidden = atlas.models.length < 2;
  fillSpecies();
  $("sequence-panel").hidden = !atlas.sequence_queries;
  renderProvenance();
}

// --- tables and downloads ------------------------------------------------------------------

function cellText(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(4);
  return String(value);
}

function tsv(columns, rows) {
  const clean = (v) => (v === null || v === undefined ? "" : String(v).replace(/[\t\n\r]/g, " "));
  return [columns.join("\t"), ...rows.map((r) => columns.map((c) => clean(r[c])).join("\t"))].join("\n") + "\n";
}

function downloadLinks(name, columns, rows) {
  shown = { name, columns, rows };
  const bar = document.createElement("p");
  bar.className = "downloads";
  const files = [
    ["tsv", "text/tab-separated-values", tsv(columns, rows), "Download TSV"],
    ["json", "application/json", JSON.stringify(rows, null, 2) + "\n", "Download JSON"],
  ];
  for (const [ext, type, text, label] of files) {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type }));
    link.download = `${name}.${ext}`;
    link.id = `download-${ext}`;
    link.textContent = label;
    bar.append(link);
  }
  return bar;
}

function extraColumns(rows, known) {
  const extra = new Set();
  for (const row of rows) {
    for (const [name, value] of Object.entries(row)) {
      if (!known.includes(name) && !name.startsWith("query_") && value !== null) extra.add(name);
    }
  }
  return [...extra];
}

function table(caption, columns, labels, rows, decorate) {
  const element = document.createElement("table");
  const title = document.createElement("caption");
  title.textContent = caption;
  element.append(title);
  const head = element.createTHead().insertRow();
  for (const c of columns) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = labels[c] || c;
    head.append(th);
  }
  const body = element.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const c of columns) {
      const td = tr.insertCell();
      td.textContent = cellText(row[c]);
      if (typeof row[c] === "number") td.className = "num";
      if (decorate) decorate(c, row, td);
    }
  }
  return element;
}

// --- gene lookup ------------------------------------------------------------------------------

function lookupHash(gene, from, to, k) {
  const params = new URLSearchParams({ gene, from, k: String(k) });
  if (to) params.set("to", to);
  return `#lookup?${params}`;
}

function renderHits(answer, to) {
  const results = $("results");
  results.replaceChildren();
  const q = answer.query;
  const name = q.gene_symbol ? `${q.gene_symbol} (${q.gene_id})` : q.gene_id;
  if (!answer.hits.length) {
    results.textContent = `No hits for ${name}.`;
    return;
  }
  const columns = [...HIT_COLUMNS, ...extraColumns(answer.hits, HIT_COLUMNS), "reverse"];
  const labels = Object.assign({ reverse: `Back to ${q.species}` }, HIT_LABELS);
  const k = $("k").value;
  const caption = `Homologs of ${name} in ${to || "every other species"} (${answer.model})`;
  const rows = answer.hits.map((h) => Object.assign({}, h, { reverse: null }));
  results.append(table(caption, columns, labels, rows, (column, hit, cell) => {
    if (column !== "reverse") return;
    const link = document.createElement("a");
    link.href = lookupHash(hit.gene_id, hit.species, q.species, k);
    link.className = "reverse";
    link.textContent = `homologs of ${hit.gene_symbol || hit.gene_id}`;
    link.setAttribute("aria-label", `homologs of ${hit.gene_symbol || hit.gene_id} (${hit.species}) in ${q.species}`);
    cell.append(link);
  }));
  const dataColumns = ["query_species", "query_gene_id", "query_gene_symbol", ...columns.filter((c) => c !== "reverse")];
  const data = answer.hits.map((h) => Object.assign(
    { query_species: q.species, query_gene_id: q.gene_id, query_gene_symbol: q.gene_symbol }, h));
  results.append(downloadLinks(`homologs_${q.gene_symbol || q.gene_id}_${q.species}`, dataColumns, data));
}

async function lookUp(gene, from, to, k) {
  showError("");
  $("results").textContent = "Searching…";
  try {
    const answer = await api("homologs", [["gene", gene], ["from", from], ["to", to], ["k", k], ["model", currentModel().model]]);
    renderHits(answer, to);
  } catch (error) {
    $("results").replaceChildren();
    showError(error.message);
  }
}

function runHash() {
  const [view, query] = location.hash.slice(1).split("?");
  if (view !== "lookup" || !query) return;
  const params = new URLSearchParams(query);
  const gene = params.get("gene");
  const from = params.get("from");
  if (!gene || !from) return;
  $("from-species").value = from;
  $("to-species").value = params.get("to") || "";
  $("gene").value = gene;
  if (params.get("k")) $("k").value = params.get("k");
  lookUp(gene, from, params.get("to") || "", $("k").value);
}

let suggestTimer = null;
async function suggest() {
  const text = $("gene").value.trim();
  const list = $("gene-suggestions");
  if (!text) return list.replaceChildren();
  try {
    const found = await api("genes", [["species", $("from-species").value], ["q", text], ["limit", 10],
      ["model", currentModel().model]]);
    list.replaceChildren();
    for (const g of found.genes) {
      option(list, g.gene_symbol || g.gene_id, g.gene_symbol ? `${g.gene_symbol} (${g.gene_id})` : g.gene_id);
    }
  } catch (error) {
    list.replaceChildren();  // suggestions are a help: a failed one must not hide the real error box
  }
}

// --- sequence query ------------------------------------------------------------------------------

async function searchSequence(event) {
  event.preventDefault();
  showError("");
  const model = currentModel();
  const to = $("to-species").value ? [$("to-species").value] : model.species.map((s) => s.species);
  const sequence = $("sequence").value.replace(/\s+/g, "");
  $("results").textContent = "Embedding the sequence…";
  try {
    const answer = await api("homologs/sequence", [], {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sequences: [{ id: "query", sequence }], to, k: Number($("k").value), model: model.model }),
    });
    const results = $("results");
    results.replaceChildren();
    const hits = answer.results[0].hits;
    const columns = [...HIT_COLUMNS.filter((c) => c !== "is_rbh"), ...extraColumns(hits, HIT_COLUMNS)];
    results.append(table(`Genes nearest to the pasted sequence (${answer.model})`, columns, HIT_LABELS, hits));
    results.append(downloadLinks("homologs_of_sequence", columns, hits));
  } catch (error) {
    $("results").replaceChildren();
    showError(error.message);
  }
}

// --- mapping tables ------------------------------------------------------------------------------

async function showMapping(offset) {
  showError("");
  const [a, b] = $("mapping-pair").value.split("/");
  const limit = Number($("page-size").value) || 50;
  const out = $("mapping-results");
  out.textContent = "Loading…";
  try {
    const page = await api(`mappings/${encodeURIComponent(a)}/${encodeURIComponent(b)}`, [
      ["model", currentModel().model], ["relation", $("relation").value], ["min_score", $("min-score").value],
      ["offset", offset], ["limit", limit],
    ]);
    mappingOffset = page.offset;
    out.replaceChildren();
    const columns = [...MAPPING_FIRST, ...extraColumns(page.rows, [...MAPPING_FIRST, "species_a", "species_b"])];
    const last = page.offset + page.rows.length;
    const caption = `${a} → ${b}: rows ${page.rows.length ? page.offset + 1 : 0}–${last} of ` +
      `${page.total.toLocaleString()} matching`;
    out.append(table(caption, columns, {}, page.rows));
    const pager = document.createElement("p");
    pager.className = "pager";
    const previous = document.createElement("button");
    previous.type = "button";
    previous.textContent = "Previous page";
    previous.disabled = page.offset === 0;
    previous.addEventListener("click", () => showMapping(Math.max(0, mappingOffset - limit)));
    const next = document.createElement("button");
    next.type = "button";
    next.textContent = "Next page";
    next.disabled = page.next_offset === null;
    next.addEventListener("click", () => showMapping(page.next_offset));
    pager.append(previous, next);
    out.append(pager, downloadLinks(`mapping_${a}__${b}_${page.offset}`, ["species_a", "species_b", ...columns], page.rows));
  } catch (error) {
    out.replaceChildren();
    showError(error.message);
  }
}

// --- wiring ------------------------------------------------------------------------------------

async function start() {
  try {
    await loadAtlas();
    runHash();
  } catch (error) {
    $("provenance").textContent = "";
    showError(error.message);
  }
}

$("gene-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const gene = $("gene").value.trim();
  const target = lookupHash(gene, $("from-species").value, $("to-species").value, $("k").value);
  if (location.hash === target) runHash();
  else location.hash = target;  // a shareable URL; hashchange runs the query
});
$("gene").addEventListener("input", () => {
  clearTimeout(suggestTimer);
  suggestTimer = setTimeout(suggest, 150);
});
$("model").addEventListener("change", fillSpecies);
$("sequence-form").addEventListener("submit", searchSequence);
$("mapping-form").addEventListener("submit", (event) => {
  event.preventDefault();
  showMapping(0);
});
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORE, $("api-key").value);
  $("api-key").value = "";
  showError("");
  start();
});
window.addEventListener("hashchange", runHash);
start();
