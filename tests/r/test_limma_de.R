# Tests for scripts/limma_de.R (run by tests/r/run.sh).
# Every check counts as passed or failed; the last line is "N passed, M failed" and the exit
# status is non-zero when anything failed.

suppressPackageStartupMessages({
  library(limma)
  library(edgeR)
})

SCRIPT <- Sys.getenv("LIMMA_DE_SCRIPT", "scripts/limma_de.R")
if (!file.exists(SCRIPT)) stop("cannot find ", SCRIPT, " (set LIMMA_DE_SCRIPT)")
SCRIPT <- normalizePath(SCRIPT)
CONTROL <- "Dimethyl Sulfoxide"
DEFAULT_DESIGN <- "~0+Rpert+donor_id+plate_name+row"
OUT_FILES <- c("compounds.txt", "logfc.f64", "pvalue.f64", "tstat.f64", "adjpvalue.f64",
               "aveexpr.f64", "summary.tsv")

N_PASS <- 0L
N_FAIL <- 0L
check <- function(name, ok, detail = "") {
  ok <- isTRUE(ok)
  if (ok) N_PASS <<- N_PASS + 1L else N_FAIL <<- N_FAIL + 1L
  cat(if (ok) "ok   " else "FAIL ", name,
      if (!ok && nzchar(detail)) paste0("  -- ", detail) else "", "\n", sep = "")
  invisible(ok)
}
section <- function(name, expr) {
  cat("== ", name, "\n", sep = "")
  tryCatch(expr, error = function(e) check(paste0(name, ": ran without R error"), FALSE,
                                           conditionMessage(e)))
}

ROOT <- tempfile("limma_de_test_")
dir.create(ROOT)
new_dir <- function(tag) { d <- file.path(ROOT, paste0(tag, "_", basename(tempfile("")))); dir.create(d); d }

# ------------------------------------------------------------------ simulation
# 3 donors x 2 plates (plate determines donor); per plate every compound in one well and the
# control in 4 wells; row A-H is a nuisance factor. NB counts with per-sample library sizes,
# donor/plate/row effects, and known per-compound effects on 30 genes each.
simulate <- function(seed = 1, G = 500, n_effect = 30) {
  set.seed(seed)
  compounds <- c("Alvocidib", "BMS-536924", "Crizotinib", "Dasatinib", "5-(9-Isopropyl-8-methyl-2-morpholino-9H-purin-6-yl)pyrimidin-2-amine",
                 "O-Demethylated Adapalene", "Penfluridol", "Tamatinib", "Vorinostat", "IN1451")
  donors <- c("donor_0", "donor_1", "donor_2")
  plates <- paste0("plate_", 0:5)
  plate_donor <- rep(donors, each = 2)
  wells_all <- as.vector(outer(LETTERS[1:8], sprintf("%02d", 1:12), paste0))
  rows <- list()
  for (p in seq_along(plates)) {
    sm <- c(compounds, rep(CONTROL, 4))
    wl <- sample(wells_all, length(sm))
    rows[[p]] <- data.frame(sm_name = sm, donor_id = plate_donor[p], plate_name = plates[p],
                            row = substr(wl, 1, 1), well = wl, stringsAsFactors = FALSE)
  }
  s <- do.call(rbind, rows)
  s$cell_type <- "T cells CD4+"
  s$sample <- paste(s$plate_name, s$well, s$cell_type, sep = "_")
  s$n_cells <- as.character(sample(7:155, nrow(s), replace = TRUE))
  s <- s[, c("sample", "sm_name", "donor_id", "plate_name", "row", "well", "cell_type", "n_cells")]
  S <- nrow(s)

  genes <- sprintf("GENE%04d", seq_len(G))
  base <- exp(rnorm(G, log(40), 1.3))
  base[G] <- 0                                      # one all-zero gene
  # true effects: compound x gene log2FC; effect genes drawn from genes with base >= 5
  eff <- matrix(0, G, length(compounds), dimnames = list(genes, compounds))
  eligible <- which(base >= 5)
  for (k in seq_along(compounds)) {
    gk <- sample(eligible, n_effect)
    eff[gk, k] <- sample(c(-1, 1), n_effect, replace = TRUE) * runif(n_effect, 1, 3)
  }
  donor_eff <- matrix(rnorm(G * 3, 0, 0.3), G, 3, dimnames = list(NULL, donors))
  plate_eff <- matrix(rnorm(G * 6, 0, 0.2), G, 6, dimnames = list(NULL, plates))
  row_eff <- matrix(rnorm(G * 8, 0, 0.1), G, 8, dimnames = list(NULL, LETTERS[1:8]))
  lib <- runif(S, 0.3, 3)
  counts <- matrix(0, G, S)
  for (j in seq_len(S)) {
    l2 <- donor_eff[, s$donor_id[j]] + plate_eff[, s$plate_name[j]] + row_eff[, s$row[j]]
    if (s$sm_name[j] != CONTROL) l2 <- l2 + eff[, s$sm_name[j]]
    mu <- base * lib[j] * 2^l2
    counts[, j] <- rnbinom(G, mu = mu, size = 10)
  }
  list(genes = genes, samples = s, counts = counts, eff = eff, compounds = compounds)
}

write_exchange <- function(dir, sim, counts = sim$counts) {
  dir.create(dir, showWarnings = FALSE, recursive = TRUE)
  con <- file(file.path(dir, "genes.txt"), "wb")
  writeLines(sim$genes, con, sep = "\n", useBytes = TRUE); close(con)
  s <- sim$samples
  con <- file(file.path(dir, "samples.tsv"), "wb")
  writeLines(c(paste(colnames(s), collapse = "\t"), do.call(paste, c(s, sep = "\t"))),
             con, sep = "\n", useBytes = TRUE)
  close(con)
  con <- file(file.path(dir, "counts.f64"), "wb")
  writeBin(as.double(counts), con, size = 8, endian = "little"); close(con)
  invisible(dir)
}

run_script <- function(input, output, args = character(), env = character()) {
  errf <- tempfile(tmpdir = ROOT)
  outf <- tempfile(tmpdir = ROOT)
  t0 <- proc.time()[["elapsed"]]
  status <- suppressWarnings(system2("Rscript",
    c(shQuote(SCRIPT), "--input", shQuote(input), "--output", shQuote(output), args),
    stdout = outf, stderr = errf, env = env))
  list(status = status, stderr = readLines(errf, warn = FALSE),
       seconds = proc.time()[["elapsed"]] - t0)
}

read_outputs <- function(dir, G) {
  comp <- readLines(file.path(dir, "compounds.txt"), encoding = "UTF-8", warn = FALSE)
  K <- length(comp)
  rd <- function(f) {
    n <- file.info(file.path(dir, f))$size / 8
    con <- file(file.path(dir, f), "rb")
    x <- readBin(con, "double", n = n + 1, size = 8, endian = "little"); close(con)
    list(x = x, n = n)
  }
  l <- rd("logfc.f64"); p <- rd("pvalue.f64")
  t <- rd("tstat.f64"); a <- rd("adjpvalue.f64"); e <- rd("aveexpr.f64")
  gk <- function(r) matrix(r$x[seq_len(G * K)], G, K, dimnames = list(NULL, comp))
  list(compounds = comp, n_logfc = l$n, n_p = p$n, n_t = t$n, n_adjp = a$n, n_aveexpr = e$n,
       G = G, K = K, logfc = gk(l), p = gk(p), t = gk(t), adjp = gk(a), aveexpr = e$x[seq_len(G)])
}

# Independent reference: the recipe written out by hand, one compound at a time, with
# makeContrasts on syntactic column names and topTable(number = Inf, sort.by = "none").
reference_limma <- function(sim, design_formula = ~0 + Rpert + donor_id + plate_name + row) {
  s <- sim$samples
  dat <- data.frame(Rpert = factor(s$sm_name), donor_id = factor(s$donor_id),
                    plate_name = factor(s$plate_name), row = factor(s$row))
  design <- suppressWarnings(model.matrix(design_formula, dat))
  colnames(design) <- make.names(colnames(design), unique = TRUE)
  dge <- calcNormFactors(DGEList(counts = sim$counts))
  invisible(capture.output(v <- suppressWarnings(voom(dge, design))))
  invisible(capture.output(fit <- suppressWarnings(lmFit(v, design))))
  ctrl_col <- make.names(paste0("Rpert", CONTROL))
  out_l <- out_p <- out_t <- out_a <- matrix(NA_real_, nrow(sim$counts), 0)
  out_e <- NULL
  same_as_fit2 <- TRUE
  for (k in setdiff(levels(dat$Rpert), CONTROL)) {
    kc <- make.names(paste0("Rpert", k))
    cm <- makeContrasts(contrasts = paste0(kc, " - ", ctrl_col), levels = design)
    fit2 <- eBayes(contrasts.fit(fit, cm))
    tt <- topTable(fit2, coef = 1, number = Inf, sort.by = "none")
    same_as_fit2 <- same_as_fit2 && identical(unname(tt$logFC), unname(fit2$coefficients[, 1])) &&
      identical(unname(tt$P.Value), unname(fit2$p.value[, 1]))
    out_l <- cbind(out_l, tt$logFC); out_p <- cbind(out_p, tt$P.Value)
    out_t <- cbind(out_t, tt$t); out_a <- cbind(out_a, tt$adj.P.Val)
    colnames(out_l)[ncol(out_l)] <- colnames(out_p)[ncol(out_p)] <- k
    colnames(out_t)[ncol(out_t)] <- colnames(out_a)[ncol(out_a)] <- k
    if (is.null(out_e)) out_e <- tt$AveExpr
    same_as_fit2 <- same_as_fit2 && identical(tt$AveExpr, out_e)
  }
  list(logfc = out_l, p = out_p, t = out_t, adjp = out_a, aveexpr = out_e,
       same_as_fit2 = same_as_fit2)
}

auc <- function(score, pos) {
  r <- rank(score)
  n1 <- sum(pos); n0 <- sum(!pos)
  (sum(r[pos]) - n1 * (n1 + 1) / 2) / (n1 * n0)
}

no_outputs_left <- function(dir) length(list.files(dir, all.files = TRUE, no.. = TRUE)) == 0L

sim <- simulate()
G <- length(sim$genes)
IN_MAIN <- write_exchange(new_dir("in_main"), sim)

# ------------------------------------------------------------------ test 1 + 2
section("1+2. default design vs independent limma, recovery of simulated effects", {
  out <- new_dir("out_main")
  r <- run_script(IN_MAIN, out)
  cat(sprintf("     (script run: %.1f s, %d samples x %d genes)\n", r$seconds,
              nrow(sim$samples), G))
  check("1. exit status 0", r$status == 0, paste(r$stderr, collapse = " | "))
  o <- read_outputs(out, G)
  ref <- reference_limma(sim)
  K <- ncol(ref$logfc)
  check("1. compounds.txt = all non-control compounds, byte order",
        identical(o$compounds, sort(sim$compounds, method = "radix")),
        paste(o$compounds, collapse = ", "))
  check("1. logfc.f64/pvalue.f64 hold exactly G*K doubles",
        o$n_logfc == G * K && o$n_p == G * K, sprintf("%g %g vs %d", o$n_logfc, o$n_p, G * K))
  check("1. reference: topTable(sort='none') columns identical to fit2 coefficients/p.value",
        ref$same_as_fit2)
  ord <- match(o$compounds, colnames(ref$logfc))
  dl <- max(abs(o$logfc - ref$logfc[, ord]))
  dp <- max(abs(o$p - ref$p[, ord]))
  check(sprintf("1a. logFC equals independent limma (max |diff| = %.2e <= 1e-8)", dl), dl <= 1e-8)
  check(sprintf("1a. P.Value equals independent limma (max |diff| = %.2e <= 1e-8)", dp), dp <= 1e-8)
  check("1a. tstat.f64/adjpvalue.f64 hold G*K doubles, aveexpr.f64 G",
        o$n_t == G * K && o$n_adjp == G * K && o$n_aveexpr == G,
        sprintf("%g %g %g vs %d, %d", o$n_t, o$n_adjp, o$n_aveexpr, G * K, G))
  dt <- max(abs(o$t - ref$t[, ord]))
  da <- max(abs(o$adjp - ref$adjp[, ord]))
  de <- max(abs(o$aveexpr - ref$aveexpr))
  check(sprintf("1a. t equals topTable's t (max |diff| = %.2e <= 1e-8)", dt), dt <= 1e-8)
  check(sprintf("1a. adjpvalue equals topTable's adj.P.Val, BH per compound (max |diff| = %.2e <= 1e-8)", da),
        da <= 1e-8)
  check(sprintf("1a. AveExpr equals topTable's AveExpr, the same for every compound (max |diff| = %.2e <= 1e-8)", de),
        de <= 1e-8)
  # BH within a compound, not over the whole table: adjusting all G*K P values at once differs.
  whole <- matrix(p.adjust(as.vector(o$p), "BH"), G, ncol(o$p))
  check("1a. (adj.P.Val is per compound: BH over the whole table would differ)",
        max(abs(whole - o$adjp)) > 1e-6)
  check("1a. adj.P.Val >= P.Value and <= 1 everywhere", all(o$adjp >= o$p & o$adjp <= 1))

  aucs <- signs <- numeric(0)
  for (k in o$compounds) {
    truth <- sim$eff[, k]
    pos <- truth != 0
    score <- abs(sign(o$logfc[, k]) * -log10(o$p[, k]))
    aucs[k] <- auc(score, pos)
    signs[k] <- mean(sign(o$logfc[pos, k]) == sign(truth[pos]))
  }
  check(sprintf("1b. AUC(|sign*-log10 P|, effect genes vs rest) > 0.9 for every compound (min %.3f)",
                min(aucs)), all(aucs > 0.9),
        paste(sprintf("%s=%.3f", names(aucs), aucs), collapse = ", "))
  check(sprintf("1c. logFC sign agrees with truth on >= 95%% of effect genes (min %.3f)",
                min(signs)), all(signs >= 0.95),
        paste(sprintf("%s=%.3f", names(signs), signs), collapse = ", "))

  # Null control: genes without effects should not be inflated.
  null_frac <- mean(o$p[rowSums(sim$eff != 0) == 0 & seq_len(G) < G, ] < 0.05)
  check(sprintf("1d. null genes: fraction P < 0.05 = %.3f (<= 0.10)", null_frac), null_frac <= 0.10)

  # 2. redundant nuisance terms: plate_name determines donor_id.
  check("2. non-estimable nuisance coefficients reported on stderr",
        any(grepl("not estimable", r$stderr, ignore.case = TRUE)) &&
          any(grepl("plate_name", r$stderr)), paste(r$stderr, collapse = " | "))
  check("2. no error line despite non-estimable coefficients", !any(grepl("^error:", r$stderr)))
  check("2. all outputs finite", all(is.finite(o$logfc)) && all(is.finite(o$p)) &&
          all(o$p >= 0 & o$p <= 1))
  check("2. all-zero gene gets finite values", all(is.finite(o$logfc[G, ])) && all(is.finite(o$p[G, ])))
  sm <- read.delim(file.path(out, "summary.tsv"), quote = "", check.names = FALSE,
                   colClasses = "character", comment.char = "")
  check("2. summary.tsv has one row per compound with n_samples = 6",
        identical(sm$compound, o$compounds) && all(sm$n_samples == "6") &&
          all(sm$n_genes_na == "0"))
  check("2. no temporary files left in output dir",
        setequal(list.files(out, all.files = TRUE, no.. = TRUE), OUT_FILES))

  # Design given with an intercept: the numeric contrast must still be Rpert_k - Rpert_control.
  out_i <- new_dir("out_intercept")
  r2 <- run_script(IN_MAIN, out_i, c("--design", shQuote("~Rpert+donor_id+plate_name+row"),
                                     "--threads", "2"))
  o2 <- read_outputs(out_i, G)
  cat(sprintf("     (intercept design: max |dlogFC| %.2e, max |dP| %.2e, max |dlog10P| %.2e)\n",
              max(abs(o2$logfc - o$logfc)), max(abs(o2$p - o$p)),
              max(abs(log10(o2$p) - log10(o$p)))))
  # logFC is an estimable function, so it must not depend on the parameterisation. P does:
  # with voom weights contrasts.fit combines standard errors through the *unweighted*
  # coefficient correlation (an approximation), so ~Rpert+... and ~0+Rpert+... give different
  # P values. Only the official ~0+Rpert+... reproduces the official numbers.
  check("2. intercept parameterisation (~Rpert+...): same logFC (numeric contrast is right)",
        r2$status == 0 && max(abs(o2$logfc - o$logfc)) <= 1e-8,
        paste(r2$stderr, collapse = " | "))
})

# ------------------------------------------------------------------ test 3
expect_error <- function(name, input, args = character(), pattern, stale = FALSE) {
  out <- new_dir("out_err")
  if (stale) for (f in OUT_FILES) writeLines("stale", file.path(out, f))
  r <- run_script(input, out, args)
  errs <- grep("^error:", r$stderr, value = TRUE)
  check(paste0("3. ", name, ": exit status 2"), r$status == 2,
        paste("status", r$status, "|", paste(r$stderr, collapse = " | ")))
  check(paste0("3. ", name, ": exactly one `error:` line matching /", pattern, "/"),
        length(errs) == 1 && grepl(pattern, errs, perl = TRUE),
        paste(r$stderr, collapse = " | "))
  check(paste0("3. ", name, ": no output files left", if (stale) " (stale ones removed)" else ""),
        no_outputs_left(out), paste(list.files(out, all.files = TRUE, no.. = TRUE), collapse = ", "))
  invisible(errs)
}

section("3. bad inputs", {
  expect_error("unknown control", IN_MAIN, c("--control", "Nope"),
               "^error: T cells CD4\\+: unknown negative control `Nope`; compounds present: .*Dimethyl Sulfoxide",
               stale = TRUE)
  expect_error("design term not a column", IN_MAIN, c("--design", shQuote("~0+Rpert+batch")),
               "^error: .*`batch`.*not a column")
  # The design is parsed, not evaluated: R code in it is refused and never runs.
  marker <- file.path(tempdir(), "design_injection_ran")
  unlink(marker)
  expect_error("design holding R code", IN_MAIN,
               c("--design", shQuote(paste0("~0+Rpert+system('touch ", marker, "')"))),
               "^error: .*may only use ~ \\+ - : \\* and column names; found `system`")
  check("3. design holding R code: the code did not run", !file.exists(marker), marker)
  expect_error("design with a number other than 0/1", IN_MAIN, c("--design", shQuote("~0+Rpert+2")),
               "^error: .*may only hold the numbers 0 and 1")

  d <- new_dir("in_badsize"); write_exchange(d, sim)
  sz <- file.info(file.path(d, "counts.f64"))$size
  con <- file(file.path(d, "counts.f64"), "rb"); raw <- readBin(con, "raw", sz); close(con)
  con <- file(file.path(d, "counts.f64"), "wb"); writeBin(raw[seq_len(sz - 8)], con); close(con)
  expect_error("counts of the wrong size", d, character(), "^error: .*counts\\.f64 has \\d+ bytes; expected")

  cn <- sim$counts; cn[3, 5] <- NaN
  expect_error("NaN count", write_exchange(new_dir("in_nan"), sim, cn), pattern = "^error: .*NaN")
  cn <- sim$counts; cn[7, 2] <- -1
  expect_error("negative count", write_exchange(new_dir("in_neg"), sim, cn), pattern = "^error: .*negative")

  sim1 <- sim
  keep <- which(sim$samples$sm_name != CONTROL | !duplicated(sim$samples$sm_name))
  sim1$samples <- sim$samples[keep, ]; sim1$counts <- sim$counts[, keep]
  expect_error("one control sample", write_exchange(new_dir("in_1ctrl"), sim1),
               pattern = "^error: .*has 1 sample\\(s\\); need at least 2")

  # Aliased compound: design ~0+Rpert+well; every plate puts the same 14 well labels W01..W14
  # in a random order (so wells and compounds are mixed), except that "Aliasol" always sits in
  # well X99, alone. Then column RpertAliasol == column wellX99.
  sa <- sim
  s <- sim$samples
  s$sm_name[s$sm_name == "Penfluridol"] <- "Aliasol"
  for (p in unique(s$plate_name)) {
    i <- which(s$plate_name == p & s$sm_name != "Aliasol")
    s$well[i] <- sample(sprintf("W%02d", seq_along(i)))
    s$well[s$plate_name == p & s$sm_name == "Aliasol"] <- "X99"
  }
  sa$samples <- s
  # What limma itself does with this design: it drops wellX99 (pivoted last) and returns a
  # finite, meaningless contrast for Aliasol - it does not flag the problem.
  dat <- data.frame(Rpert = factor(s$sm_name), well = factor(s$well))
  X <- model.matrix(~0 + Rpert + well, dat)
  lim_ne <- nonEstimable(X)
  invisible(capture.output({
    v <- suppressWarnings(voom(calcNormFactors(DGEList(sa$counts)), X))
    fit <- suppressWarnings(lmFit(v, X))
  }))
  cvec <- setNames(numeric(ncol(X)), colnames(X))
  cvec["RpertAliasol"] <- 1; cvec[paste0("Rpert", CONTROL)] <- -1
  f2 <- eBayes(contrasts.fit(fit, cbind(cvec)))
  check("3. (limma alone: wellX99 non-estimable but Aliasol contrast silently finite)",
        identical(lim_ne, "wellX99") && all(is.finite(f2$coefficients)),
        paste(lim_ne, collapse = ","))
  errs <- expect_error("aliased compound (~0+Rpert+well)", write_exchange(new_dir("in_alias"), sa),
               c("--design", shQuote("~0+Rpert+well")),
               "^error: T cells CD4\\+: contrast Aliasol - Dimethyl Sulfoxide cannot be estimated \\(.*wellX99")
})

# ------------------------------------------------------------------ test 4
section("4. awkward compound names round-trip exactly", {
  weird <- c("Foo (1,2) \"bar\" + 'baz'", "N-[4-(2,3-dihydro)phenyl]-1H-pyrazole, HCl #2",
             "\u00b5-Opioid agonist; 10% (+/-)")
  s4 <- sim
  old <- c("Alvocidib", "Crizotinib", "Tamatinib")
  for (i in seq_along(old)) s4$samples$sm_name[s4$samples$sm_name == old[i]] <- weird[i]
  d <- write_exchange(new_dir("in_weird"), s4)
  # expected order: raw UTF-8 byte order, computed via hex strings (independent of R's sort)
  nm <- enc2utf8(setdiff(unique(s4$samples$sm_name), CONTROL))
  hex <- vapply(nm, function(x) paste(as.character(charToRaw(x)), collapse = ""), "")
  expected <- nm[order(hex, method = "radix")]
  check("4. (byte order puts the non-ASCII name last)", startsWith(expected[length(expected)], "\u00b5"))
  exp_bytes <- charToRaw(paste0(paste(expected, collapse = "\n"), "\n"))
  for (loc in c("C.UTF-8", "C")) {
    out <- new_dir("out_weird")
    r <- run_script(d, out, env = c(paste0("LC_ALL=", loc), paste0("LANG=", loc)))
    sz <- file.info(file.path(out, "compounds.txt"))$size
    got <- if (is.na(sz)) raw(0) else readBin(file.path(out, "compounds.txt"), "raw", sz)
    check(sprintf("4. [LC_ALL=%s] exit 0 and compounds.txt byte-identical to the names", loc),
          r$status == 0 && identical(got, exp_bytes),
          paste(c(rawToChar(got), r$stderr), collapse = " | "))
    if (loc == "C.UTF-8") {
      o <- read_outputs(out, G)
      ref <- read_outputs(file.path(ROOT, list.files(ROOT, pattern = "^out_main")[1]), G)
      # same data, renamed compounds: values must follow the names
      ok <- TRUE
      for (i in seq_along(old)) ok <- ok && max(abs(o$logfc[, enc2utf8(weird[i])] - ref$logfc[, old[i]])) <= 1e-10 &&
        max(abs(o$p[, enc2utf8(weird[i])] - ref$p[, old[i]])) <= 1e-10
      check("4. values follow the renamed compounds", ok)
    }
  }
})

# ------------------------------------------------------------------ test 5
# Predicted samples (column `predicted`): a noise-free "generated" compound, one sample per plate
# (its NB means, rounded), fitted with the real samples. The residual variance must be the real
# samples' alone: the script's t and P equal limma's own on the same voom object with lmFit's
# sigma and df.residual taken from the real samples' fit; without the column, the predicted
# replicates' tiny residuals lower every gene's variance and inflate every t.
section("5. predicted samples: the residual variance is the real samples'", {
  set.seed(5)
  s5 <- sim
  # As many predicted samples as a generation run brings: 12 compounds, one sample per plate.
  plates <- unique(sim$samples$plate_name)
  one <- sim$samples[match(plates, sim$samples$plate_name), ]
  ctrl_mean <- rowMeans(sim$counts[, sim$samples$sm_name == CONTROL])
  gen <- NULL
  gen_counts <- NULL
  for (k in 1:12) {
    g <- one
    g$sm_name <- sprintf("Generated %02d", k)
    g$well <- sprintf("P%02d", k)
    g$row <- "H"
    g$sample <- paste0("generated_", k, "_", plates)
    effect <- 2^ifelse((seq_len(G) + k) %% 10 == 0, 1.5, 0)
    gen <- rbind(gen, g)
    gen_counts <- cbind(gen_counts, sapply(seq_along(plates), function(j) round(ctrl_mean * effect * runif(1, 0.9, 1.1))))
  }
  s5$samples <- rbind(sim$samples, gen)
  s5$counts <- cbind(sim$counts, gen_counts)
  marked <- s5
  marked$samples$predicted <- c(rep("0", nrow(sim$samples)), rep("1", nrow(gen)))
  d_plain <- write_exchange(new_dir("in_gen_plain"), s5)
  d_marked <- write_exchange(new_dir("in_gen_marked"), marked)
  out_plain <- new_dir("out_gen_plain"); out_marked <- new_dir("out_gen_marked")
  r1 <- run_script(d_plain, out_plain)
  r2 <- run_script(d_marked, out_marked)
  check("5. exit status 0 (both)", r1$status == 0 && r2$status == 0, paste(c(r1$stderr, r2$stderr), collapse = " | "))
  check("5. the script says where the variance comes from",
        any(grepl("residual variance from the 84 real samples", r2$stderr)), paste(r2$stderr, collapse = " | "))
  o_plain <- read_outputs(out_plain, G); o_marked <- read_outputs(out_marked, G)
  # limma's own computation with the real samples' sigma and df.
  s <- s5$samples
  dat <- data.frame(Rpert = factor(s$sm_name), donor_id = factor(s$donor_id),
                    plate_name = factor(s$plate_name), row = factor(s$row))
  design <- suppressWarnings(model.matrix(~0 + Rpert + donor_id + plate_name + row, dat))
  colnames(design) <- make.names(colnames(design), unique = TRUE)
  dge <- calcNormFactors(DGEList(counts = s5$counts))
  invisible(capture.output(v <- suppressWarnings(voom(dge, design))))
  invisible(capture.output(fit <- suppressWarnings(lmFit(v, design))))
  real <- !startsWith(s$sm_name, "Generated")
  invisible(capture.output(fit_real <- suppressWarnings(lmFit(v[, real], design[real, , drop = FALSE]))))
  fit$sigma <- fit_real$sigma
  fit$df.residual <- fit_real$df.residual
  ctrl_col <- make.names(paste0("Rpert", CONTROL))
  worst_t <- worst_p <- 0
  for (k in o_marked$compounds) {
    cm <- makeContrasts(contrasts = paste0(make.names(paste0("Rpert", k)), " - ", ctrl_col), levels = design)
    tt <- topTable(eBayes(contrasts.fit(fit, cm)), coef = 1, number = Inf, sort.by = "none")
    worst_t <- max(worst_t, abs(o_marked$t[, k] - tt$t))
    worst_p <- max(worst_p, abs(o_marked$p[, k] - tt$P.Value))
  }
  check(sprintf("5. t equals limma's with the real samples' sigma and df (max |diff| = %.2e <= 1e-8)", worst_t), worst_t <= 1e-8)
  check(sprintf("5. P equals limma's with the real samples' sigma and df (max |diff| = %.2e <= 1e-8)", worst_p), worst_p <= 1e-8)
  check("5. logFC does not depend on the mark", max(abs(o_marked$logfc - o_plain$logfc)) <= 1e-10)
  ratio <- stats::median(abs(o_plain$t[, "Generated 01"]) / abs(o_marked$t[, "Generated 01"]))
  check(sprintf("5. unmarked, the predicted replicates inflate the generated compound's t (median ratio %.2f > 1.2)", ratio), ratio > 1.2)
  # Only two real samples (controls of two donors): no real residual df; the joint fit's
  # variance stays, as without the mark.
  few <- marked
  keep <- which(few$samples$sm_name == CONTROL & few$samples$predicted == "0")
  keep <- keep[!duplicated(few$samples$donor_id[keep])][1:2]
  few$samples$predicted[setdiff(which(few$samples$predicted == "0"), keep)] <- "1"
  d_few <- write_exchange(new_dir("in_gen_few"), few)
  out_few <- new_dir("out_gen_few")
  r3 <- run_script(d_few, out_few, c("--design", "~0+Rpert+donor_id"))
  r4 <- run_script(d_plain, new_dir("out_gen_plain_donor"), c("--design", "~0+Rpert+donor_id"))
  check("5. two real samples: exit 0 and a note that the variance is all samples'",
        r3$status == 0 && any(grepl("leave no residual degrees of freedom", r3$stderr)), paste(r3$stderr, collapse = " | "))
  o_few <- read_outputs(out_few, G)
  o_donor <- read_outputs(file.path(ROOT, list.files(ROOT, pattern = "^out_gen_plain_donor")[1]), G)
  check("5. two real samples: t as without the mark", r4$status == 0 && max(abs(o_few$t - o_donor$t)) <= 1e-10)
  bad <- marked
  bad$samples$predicted[1] <- "yes"
  expect_error("5. a `predicted` value other than 0/1", write_exchange(new_dir("in_gen_bad"), bad),
               pattern = "column `predicted`: expected 0 or 1")
})

unlink(ROOT, recursive = TRUE)
cat(sprintf("%d passed, %d failed\n", N_PASS, N_FAIL))
quit(save = "no", status = if (N_FAIL > 0L) 1L else 0L)
