// The orthovec lookup page. Plain browser JavaScript, no framework or build step: it must run from
// the installed package on machines without internet. Every number it shows comes from the JSON
// API of the server that served it (GET /atlas, /genes, /homologs, /mappings, POST /homologs/sequence),
// and every error is the API's own `detail`, which carries the CLI's words.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "orthovec-api-key";
// The columns of a homolog table: where it is, how `orthovec map` calls it, and each source's evidence
// (the API's Homolog rows; the downloads carry every field). Evidence columns no hit has a value for
// are left out (an atlas without alignments shows no identity column).
const HIT_COLUMNS = [
  "species", "rank", "gene_symbol", "gene_id", "score", "evidence", "is_one2one", "relation", "is_rbh",
  "identity", "coverage_query", "coverage_target", "evalue", "embedding_score",
];
const ALWAYS = ["species", "rank", "gene_symbol", "gene_id", "score", "evidence", "is_one2one", "is_rbh"];
const HIT_LABELS = {
  species: "Species", gene_id: "Gene ID", gene_symbol: "Symbol", score: "Score", rank: "Rank",
  evidence: "Evidence", is_one2one: "One-to-one", relation: "Relation", is_rbh: "Reciprocal best hit",
  identity: "Identity", coverage_query: "Query coverage", coverage_target: "Hit coverage", evalue: "E-value",
  embedding_score: "Cosine",
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

// The model the user chose, or null: the server then uses the one each species is held under.
function chosenModel() {
  return $("model-field").hidden ? null : $("model").value || null;
}

// Every species of the atlas once, with its gene count (species indexed without embeddings too).
function allSpecies() {
  const seen = new Map();
  for (const s of atlas.species) if (!seen.has(s.species)) seen.set(s.species, s.genes);
  return [...seen].map(([species, genes]) => ({ species, genes }));
}

function option(select, value, label) {
  const item = document.createElement("option");
  item.value = value;
  item.textContent = label === undefined ? value : label;
  select.append(item);
}

function fillSpecies() {
  const from = $("from-species");
  const to = $("to-species");
  const keepFrom = from.value;
  from.replaceChildren();
  to.replaceChildren();
  option(to, "", "all other species");
  for (const s of allSpecies()) {
    option(from, s.species, `${s.species} (${s.genes.toLocaleString()} genes)`);
    option(to, s.species);
  }
  if (keepFrom) from.value = keepFrom;
  const pairs = $("mapping-pair");
  pairs.replaceChildren();
  for (const m of atlas.mappings) {
    const label = `${m.species_a} → ${m.species_b} (${m.evidence || "?"} evidence, ${m.model})`;
    option(pairs, `${m.model}/${m.species_a}/${m.species_b}`, label);
  }
  $("no-mappings").hidden = atlas.mappings.length > 0;
  $("mapping-form").hidden = atlas.mappings.length === 0;
}

function renderProvenance() {
  const footer = $("provenance");
  footer.replaceChildren();
  const intro = document.createElement("p");
  const sequences = !atlas.sequence_queries ? "off" :
    atlas.sequence_embedding ? "MMseqs2 search and embedding" : "MMseqs2 search (no weights to embed with)";
  intro.textContent = `orthovec ${atlas.orthovec} · store: ${atlas.store} · sequence queries: ${sequences}`;
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
  const plain = atlas.species.filter((s) => s.model === null);
  if (plain.length) {
    const line = document.createElement("p");
    line.textContent = "Indexed without embeddings (alignments only): " +
      plain.map((s) => `${s.species} ${s.genes.toLocaleString()}`).join(", ") + " genes.";
    footer.append(line);
  }
}

async function loadAtlas() {
  atlas = await api("atlas");
  $("key-form").hidden = true;
  const models = $("model");
  models.replaceChildren();
  option(models, "", "the one each species is held under");
  for (const m of atlas.models) option(models, m.model);
  $("model-field").hidden = atlas.models.length < 2;
  fillSpecies();
  $("sequence-panel").hidden = !atlas.sequence_queries;
  renderProvenance();
}

// --- tables and downloads ------------------------------------------------------------------

function cellText(value, column) {
  if (value === null || value === undefined) return "";
  if (typeof value === "boolean") return value ? "yes" : "no";
  // E-values span hundreds of orders of magnitude: 4 decimals would print 1e-37 as 0.0000.
  if (typeof value === "number" && /evalue/.test(column || "")) return value.toExponential(1);
  // Scores and fractions keep 4 decimals even when whole (JSON's 1.0 arrives as 1).
  const fraction = /score|identity|coverage|bsr|bits|margin/.test(column || "");
  if (typeof value === "number" && (fraction || !Number.isInteger(value))) return value.toFixed(4);
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
      td.textContent = cellText(row[c], c);
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

// What each target species was searched with, and any note ("no homolog with E-value ≤ 0.01 in mouse").
function targetNotes(targets) {
  const list = document.createElement("ul");
  list.className = "targets";
  for (const t of targets) {
    const item = document.createElement("li");
    const table = t.mapping ? `, mapping table ${t.mapping}` : "";
    item.textContent = `${t.species}: ${t.evidence} evidence${table}` + (t.note ? ` — ${t.note}` : "");
    if (t.note) item.className = "note";
    list.append(item);
  }
  return list;
}

function hitColumns(hits) {
  return HIT_COLUMNS.filter((c) => ALWAYS.includes(c) || hits.some((h) => h[c] !== null && h[c] !== undefined));
}

function renderHits(answer, to) {
  const results = $("results");
  results.replaceChildren();
  const q = answer.query;
  const name = q.gene_symbol ? `${q.gene_symbol} (${q.gene_id})` : q.gene_id;
  results.append(targetNotes(answer.targets));
  if (!answer.hits.length) {
    const none = document.createElement("p");
    none.textContent = `No candidates for ${name}.`;
    results.append(none);
    return;
  }
  const columns = [...hitColumns(answer.hits), "reverse"];
  const labels = Object.assign({ reverse: `Back to ${q.species}` }, HIT_LABELS);
  const k = $("k").value;
  const paralogs = answer.hits.every((h) => h.is_paralog);
  const caption = `${paralogs ? "Paralogs" : "Homologs"} of ${name} in ${to || "every other species"}` +
    (answer.model ? ` (${answer.model})` : "");
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
  const fields = Object.keys(answer.hits[0]);
  const dataColumns = ["query_species", "query_gene_id", "query_gene_symbol", ...fields];
  const data = answer.hits.map((h) => Object.assign(
    { query_species: q.species, query_gene_id: q.gene_id, query_gene_symbol: q.gene_symbol }, h));
  results.append(downloadLinks(`homologs_${q.gene_symbol || q.gene_id}_${q.species}`, dataColumns, data));
}

async function lookUp(gene, from, to, k) {
  showError("");
  $("results").textContent = "Searching…";
  try {
    const answer = await api("homologs", [["gene", gene], ["from", from], ["to", to], ["k", k], ["model", chosenModel()]]);
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
      ["model", chosenModel()]]);
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
  const to = $("to-species").value ? [$("to-species").value] : allSpecies().map((s) => s.species);
  const sequence = $("sequence").value.replace(/\s+/g, "");
  $("results").textContent = atlas.sequence_embedding ? "Searching and embedding the sequence…" : "Searching…";
  try {
    const body = { sequences: [{ id: "query", sequence }], to, k: Number($("k").value) };
    if (chosenModel()) body.model = chosenModel();
    const answer = await api("homologs/sequence", [], {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const results = $("results");
    results.replaceChildren();
    const found = answer.results[0];
    results.append(targetNotes(found.targets));
    const columns = hitColumns(found.hits).filter((c) => c !== "is_rbh" && c !== "is_one2one");
    const caption = "Genes like the pasted sequence" + (answer.model ? ` (${answer.model})` : " (MMseqs2)");
    results.append(table(caption, columns, HIT_LABELS, found.hits));
    results.append(downloadLinks("homologs_of_sequence", Object.keys(found.hits[0] || {}), found.hits));
  } catch (error) {
    $("results").replaceChildren();
    showError(error.message);
  }
}

// --- mapping tables ------------------------------------------------------------------------------

async function showMapping(offset) {
  showError("");
  const [model, a, b] = $("mapping-pair").value.split("/");
  const limit = Number($("page-size").value) || 50;
  const out = $("mapping-results");
  out.textContent = "Loading…";
  try {
    const page = await api(`mappings/${encodeURIComponent(a)}/${encodeURIComponent(b)}`, [
      ["model", model], ["relation", $("relation").value], ["min_score", $("min-score").value],
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
