#!/usr/bin/env Rscript
# limma_de.R — the official DE recipe (SPEC §3) for ONE cell type.
#
#   Rscript scripts/limma_de.R --input DIR --output DIR
#       [--design "~0+Rpert+donor_id+plate_name+row"] [--control "Dimethyl Sulfoxide"]
#       [--threads N]
#
# Input DIR (written by pgen-limma):
#   genes.txt    G gene names, one per line (UTF-8, "\n").
#   samples.tsv  tab-separated, header line, one row per pseudo-bulk sample; columns at least
#                sample, sm_name, donor_id, plate_name, row, well, cell_type, n_cells.
#                No quoting: every field is taken verbatim as text (quote="", comment.char="").
#                Optional column `predicted` (0/1): samples a model predicted (generated cells'
#                pseudo-bulk, forest predictions). With both kinds present the residual
#                variance (each gene's sigma and residual df, hence eBayes' moderation) is the
#                real samples' alone: predicted samples have no sampling noise of their own, so
#                their replicates would make limma certain of every difference, and how certain
#                would grow with how many are fitted together. Where the real samples leave no
#                residual degrees of freedom, the joint fit's variance stays (with a note).
#   counts.f64   G x S counts, raw little-endian float64, column-major (sample 1's G values,
#                then sample 2's, ...); file size must be exactly 8*G*S bytes.
#
# Recipe: DGEList(counts) -> calcNormFactors (TMM) -> voom(dge, design) -> lmFit(v, design)
#   -> contrasts.fit(fit, C) -> eBayes(), where C has one column per compound k != control,
#   C[, k] = Rpert_k - Rpert_control built numerically (see contrast_vector()).
#   Every design variable is a factor (levels in byte order); Rpert = factor(sm_name).
#   Design terms whose variable has a single level here (e.g. donor_id within one donor) are
#   dropped with a note (model.matrix refuses them; they carry no information). Terms that
#   interact with Rpert are refused. Note: logFC does not depend on how the design is
#   parameterised, but P does (with voom weights contrasts.fit combines standard errors via
#   the unweighted coefficient correlation, an approximation), so only the official
#   "~0+Rpert+donor_id+plate_name+row" reproduces the official P values.
#   All contrasts go through one contrasts.fit/eBayes call: eBayes' moderation is per gene and
#   does not depend on which contrasts are in the fit, so this equals one call per compound
#   (tests/r/test_limma_de.R checks it against a per-compound makeContrasts/topTable loop).
#   fit2$coefficients[, k], fit2$t[, k] and fit2$p.value[, k] are exactly topTable(fit2,
#   coef = k, number = Inf, sort.by = "none")$logFC / $t / $P.Value, fit$Amean is its $AveExpr,
#   and p.adjust(fit2$p.value[, k], "BH") its $adj.P.Val (all checked in the tests): the
#   Benjamini-Hochberg adjustment runs over the genes of one compound's contrast, as topTable
#   does for one coefficient, not over the whole table.
#
# Output DIR (created if missing; outputs of an earlier run are removed at start, so after a
# failure none of these files exist; each is written to a temporary name and renamed, and
# compounds.txt is renamed last):
#   compounds.txt  K compound names, one per line, "\n"-terminated, in byte (C-locale) order,
#                  the order of the blocks in the two matrices below.
#   logfc.f64      G x K logFC, raw little-endian float64, column-major (compound 1's G first).
#   pvalue.f64     G x K unadjusted P.Value, same layout.
#   tstat.f64      G x K moderated t statistic (topTable's t), same layout.
#   adjpvalue.f64  G x K Benjamini-Hochberg adjusted P (topTable's adj.P.Val, per compound),
#                  same layout.
#   aveexpr.f64    G average log2-CPM of each gene over the cell type's samples (topTable's
#                  AveExpr, fit$Amean; one value per gene, shared by every compound).
#   summary.tsv    compound, n_samples, n_genes_p_below_0.05, n_genes_p_below_0.001,
#                  n_genes_na, min_p  (header line; no quoting).
#
# NA policy: limma gives finite values for every gene of a valid input (an all-zero gene
# still gets a finite voom log-CPM and a finite fit), so NA only appears for degenerate
# per-gene fits. Such entries are written as logFC = 0, t = 0 and P = adj.P = 1 ("no evidence
# of change"; the BH adjustment is taken before, over the genes with a P, as topTable does),
# counted per compound in summary.tsv (n_genes_na) and on stderr. An NA AveExpr is written as
# NaN (it is a description of the gene, not a test result). P = 0 (underflow) is
# written as is; the sign(logFC) * -log10(P) transform and its epsilon belong to the caller.
#
# All output of this script (and limma's own cat() notes) goes to stderr; stdout stays empty.
# Errors: one line "error: <cell type>: <message>" on stderr, exit status 2 (bad input or a
# contrast that cannot be estimated); unexpected R failures exit 1, also with one line.
# Non-estimable nuisance coefficients (e.g. plate_name determines donor_id) are normal: they
# are logged on stderr and the run carries on, as limma does.
#
# --threads is accepted for interface stability; nothing here threads (R's reference BLAS is
# single-threaded), so it is only logged.

suppressPackageStartupMessages({
  library(limma)
  library(edgeR)
})

CELL_TYPE <- NULL

one_line <- function(x) gsub("[\r\n]+", " ", paste(x, collapse = " "))

die <- function(..., status = 2L) {
  msg <- one_line(paste0(...))
  prefix <- if (is.null(CELL_TYPE)) "error: " else paste0("error: ", CELL_TYPE, ": ")
  cat(prefix, msg, "\n", sep = "", file = stderr())
  quit(save = "no", status = status)
}

note <- function(...) message("limma_de: ", one_line(paste0(...)))

# Byte-order (C-locale) sorting, independent of the caller's locale.
byte_sort <- function(x) sort(unique(x), method = "radix")

quote_list <- function(x, max = 20L) {
  s <- paste0("`", head(x, max), "`", collapse = ", ")
  if (length(x) > max) s <- paste0(s, ", ... (", length(x), " in all)")
  s
}

# ---------------------------------------------------------------- arguments
parse_args <- function(args) {
  opts <- list(design = "~0+Rpert+donor_id+plate_name+row",
               control = "Dimethyl Sulfoxide", threads = "1",
               input = NULL, output = NULL)
  known <- names(opts)
  i <- 1L
  while (i <= length(args)) {
    a <- args[[i]]
    if (!startsWith(a, "--")) die("unexpected argument `", a, "`")
    key <- sub("^--", "", a)
    if (grepl("=", key, fixed = TRUE)) {
      val <- sub("^[^=]*=", "", key)
      key <- sub("=.*$", "", key)
    } else {
      if (i == length(args)) die("option --", key, " needs a value")
      i <- i + 1L
      val <- args[[i]]
    }
    if (!key %in% known) die("unknown option --", key,
                             " (known: ", paste0("--", known, collapse = ", "), ")")
    opts[[key]] <- val
    i <- i + 1L
  }
  if (is.null(opts$input)) die("missing --input DIR")
  if (is.null(opts$output)) die("missing --output DIR")
  th <- suppressWarnings(as.integer(opts$threads))
  if (is.na(th) || th < 1L) die("--threads must be a positive integer, got `", opts$threads, "`")
  opts$threads <- th
  opts
}

OUT_FILES <- c("summary.tsv", "logfc.f64", "pvalue.f64", "tstat.f64", "adjpvalue.f64",
               "aveexpr.f64", "compounds.txt")  # rename order: compounds.txt completes a result

# ---------------------------------------------------------------- inputs
read_inputs <- function(dir) {
  f_genes <- file.path(dir, "genes.txt")
  f_samples <- file.path(dir, "samples.tsv")
  f_counts <- file.path(dir, "counts.f64")
  for (f in c(f_genes, f_samples, f_counts))
    if (!file.exists(f)) die("missing input file ", f)

  genes <- readLines(f_genes, encoding = "UTF-8", warn = FALSE)
  G <- length(genes)
  if (G == 0L) die(f_genes, " lists no genes")

  samples <- tryCatch(
    utils::read.delim(f_samples, sep = "\t", header = TRUE, quote = "", comment.char = "",
                      colClasses = "character", check.names = FALSE, na.strings = character(),
                      encoding = "UTF-8", strip.white = FALSE, blank.lines.skip = TRUE),
    error = function(e) die("cannot read ", f_samples, ": ", conditionMessage(e)))
  need <- c("sample", "sm_name", "cell_type")
  miss <- setdiff(need, colnames(samples))
  if (length(miss)) die(f_samples, " lacks column(s) ", quote_list(miss))
  S <- nrow(samples)
  if (S == 0L) die(f_samples, " has no sample rows")

  ct <- unique(samples$cell_type)
  CELL_TYPE <<- if (length(ct) == 1L) ct else paste(ct, collapse = "+")
  if (length(ct) != 1L) die("samples.tsv holds ", length(ct), " cell types (",
                            quote_list(ct), "); this script handles one")
  if (anyDuplicated(samples$sample))
    die("duplicate sample name(s) in samples.tsv: ",
        quote_list(unique(samples$sample[duplicated(samples$sample)])))

  size <- file.info(f_counts)$size
  if (is.na(size) || size != 8 * G * S)
    die("counts.f64 has ", size, " bytes; expected 8 * G * S = 8 * ", G, " * ", S, " = ",
        format(8 * G * S, scientific = FALSE), " (G genes x S samples, float64)")
  con <- file(f_counts, "rb")
  x <- readBin(con, "double", n = G * S, size = 8, endian = "little")
  close(con)
  if (length(x) != G * S) die("short read from counts.f64")
  bad_nan <- sum(is.na(x))
  if (bad_nan) die("counts.f64 holds ", bad_nan, " NaN/NA value(s)")
  if (any(!is.finite(x))) die("counts.f64 holds infinite value(s)")
  if (any(x < 0)) die("counts.f64 holds ", sum(x < 0), " negative value(s)")
  counts <- matrix(x, nrow = G, ncol = S, dimnames = list(NULL, samples$sample))
  list(genes = genes, samples = samples, counts = counts)
}

# ---------------------------------------------------------------- design
# Walks a parsed design expression; anything but the formula operators, 0/1 and known column
# names is refused before the expression is ever evaluated.
check_design_expr <- function(e, design_str, known) {
  if (is.call(e)) {
    op <- e[[1L]]
    if (!is.name(op) || !as.character(op) %in% c("~", "+", "-", ":", "*", "("))
      die("design `", design_str, "` may only use ~ + - : * and column names; found `",
          one_line(deparse(op)), "`")
    for (a in as.list(e)[-1L]) check_design_expr(a, design_str, known)
  } else if (is.name(e)) {
    if (!as.character(e) %in% known)
      die("design term(s) `", as.character(e), "` not a column of samples.tsv (columns: ",
          quote_list(known, 50L), ")")
  } else if (!(is.numeric(e) && length(e) == 1L && e %in% c(0, 1))) {
    die("design `", design_str, "` may only hold the numbers 0 and 1; found `",
        one_line(deparse(e)), "`")
  }
  invisible(TRUE)
}

build_design <- function(design_str, samples, control) {
  # The design text is parsed, never evaluated as code: only a formula over sample columns
  # (names, 0, 1, ~ + - : * and parentheses) is accepted, so `system(...)` in it cannot run.
  expr <- tryCatch(str2lang(design_str),
                   error = function(e) die("cannot parse design `", design_str, "`: ",
                                           conditionMessage(e)))
  check_design_expr(expr, design_str, c("Rpert", colnames(samples)))
  f <- stats::as.formula(expr, env = globalenv())
  if (length(f) != 2L) die("design `", design_str, "` must be one-sided (~ ...)")
  vars <- all.vars(f)
  if (!"Rpert" %in% vars) die("design `", design_str, "` does not use Rpert")
  miss <- setdiff(vars, c("Rpert", colnames(samples)))
  if (length(miss))
    die("design term(s) ", quote_list(miss), " not a column of samples.tsv (columns: ",
        quote_list(colnames(samples), 50L), ")")
  tt <- stats::terms(f)
  labs <- attr(tt, "term.labels")
  fac <- attr(tt, "factors")
  ord <- attr(tt, "order")
  if (!"Rpert" %in% labs) die("design `", design_str, "` must have Rpert as a main effect")
  inter <- labs[ord > 1L & fac["Rpert", ] > 0]
  if (length(inter))
    die("design terms interacting with Rpert are not supported: ", quote_list(inter))

  df <- data.frame(row.names = seq_len(nrow(samples)))
  for (v in setdiff(vars, "Rpert"))
    df[[v]] <- factor(samples[[v]], levels = byte_sort(samples[[v]]))
  df$Rpert <- factor(samples$sm_name, levels = byte_sort(samples$sm_name))

  # A factor with one level carries no information beyond the other terms (and
  # model.matrix refuses it): drop the terms that use one, and say so.
  single <- setdiff(vars[vapply(vars, function(v) nlevels(df[[v]]) < 2L, logical(1))], "Rpert")
  if (length(single)) {
    keep <- labs[vapply(labs, function(l) !any(fac[single, l] > 0), logical(1))]
    note("dropping design term(s) ", quote_list(setdiff(labs, keep)),
         ": variable(s) ", quote_list(single), " have a single level here")
    f <- stats::reformulate(keep, intercept = attr(tt, "intercept") == 1L, env = globalenv())
  }
  X <- stats::model.matrix(f, df)
  list(formula = f, df = df, X = X)
}

# Rpert_k - Rpert_control as a coefficient vector: the difference between the design rows of
# two samples that are identical except for their compound. With no Rpert interactions this is
# the same whatever the other covariates are, and for "~0+Rpert+..." it is e_k - e_control.
contrast_vector <- function(d, k, control, template_row) {
  df2 <- d$df[c(template_row, template_row), , drop = FALSE]
  df2$Rpert[1L] <- k
  df2$Rpert[2L] <- control
  M <- stats::model.matrix(d$formula, df2)
  if (!identical(colnames(M), colnames(d$X))) stop("internal: design columns differ")
  M[1L, ] - M[2L, ]
}

# ---------------------------------------------------------------- main
main <- function() {
  # limma prints some notes with cat() (e.g. "Coefficients not estimable: ..."): keep stdout
  # clean and send everything to stderr.
  sink(stderr(), type = "output")
  opts <- parse_args(commandArgs(trailingOnly = TRUE))
  t0 <- proc.time()[["elapsed"]]

  if (!dir.exists(opts$output) && !dir.create(opts$output, recursive = TRUE, showWarnings = FALSE))
    die("cannot create output directory ", opts$output)
  old <- file.path(opts$output, OUT_FILES)
  unlink(old[file.exists(old)])

  inp <- read_inputs(opts$input)
  samples <- inp$samples
  G <- length(inp$genes)
  S <- nrow(samples)
  note(CELL_TYPE, ": ", G, " genes x ", S, " samples; design ", opts$design,
       "; control `", opts$control, "`")
  if (opts$threads > 1L)
    note("--threads ", opts$threads, " ignored: nothing here runs multi-threaded (BLAS: ",
         basename(extSoftVersion()[["BLAS"]]), ")")

  n_empty <- sum(!nzchar(samples$sm_name))
  if (n_empty) die(n_empty, " sample(s) with an empty sm_name")
  present <- byte_sort(samples$sm_name)
  if (!opts$control %in% present)
    die("unknown negative control `", opts$control, "`; compounds present: ",
        quote_list(present, 30L))
  n_ctrl <- sum(samples$sm_name == opts$control)
  if (n_ctrl < 2L)
    die("negative control `", opts$control, "` has ", n_ctrl, " sample(s); need at least 2")
  compounds <- setdiff(present, opts$control)
  if (!length(compounds)) die("no compound other than the control `", opts$control, "`")
  bad_names <- compounds[grepl("[\t\r\n]", compounds)]
  if (length(bad_names)) die("compound name(s) with tab/newline cannot be written: ",
                             quote_list(bad_names))
  zero <- which(colSums(inp$counts) == 0)
  if (length(zero))
    die(length(zero), " sample(s) with zero total count (TMM undefined): ",
        quote_list(samples$sample[zero]))

  predicted <- if ("predicted" %in% colnames(samples)) samples$predicted == "1" else rep(FALSE, S)
  if ("predicted" %in% colnames(samples) && !all(samples$predicted %in% c("0", "1")))
    die("samples.tsv column `predicted`: expected 0 or 1, found ",
        quote_list(unique(setdiff(samples$predicted, c("0", "1")))))

  d <- build_design(opts$design, samples, opts$control)
  X <- d$X
  P <- ncol(X)

  # Estimability, judged on the full design (independent of limma's column pivoting):
  # a contrast c is estimable iff it is orthogonal to the null space of X.
  sv <- svd(X)
  tol <- max(dim(X)) * max(sv$d) * .Machine$double.eps
  rank <- sum(sv$d > tol)
  N <- if (rank < P) sv$v[, (rank + 1L):P, drop = FALSE] else matrix(0, P, 0)
  if (S - rank < 1L)
    die("no residual degrees of freedom: ", S, " samples, design rank ", rank)
  ne <- limma::nonEstimable(X)
  if (length(ne))
    note("coefficients not estimable (aliased nuisance terms, carried on as limma does): ",
         paste(ne, collapse = ", "))

  template <- which(samples$sm_name == opts$control)[1L]
  C <- matrix(0, P, length(compounds), dimnames = list(colnames(X), compounds))
  for (j in seq_along(compounds)) {
    k <- compounds[[j]]
    cv <- contrast_vector(d, k, opts$control, template)
    why <- NULL
    if (ncol(N)) {
      proj <- drop(N %*% crossprod(N, cv))
      if (max(abs(proj)) > 1e-8 * max(1, sqrt(sum(cv^2)))) {
        al <- setdiff(colnames(X)[abs(proj) > 1e-8], colnames(X)[cv != 0])
        why <- paste0("Rpert_k - Rpert_control is not in the row space of the design: `",
                      k, "` (", sum(samples$sm_name == k), " sample(s)) is confounded with ",
                      if (length(al)) paste0("design column(s) ", quote_list(al))
                      else "other design terms")
      }
    }
    if (is.null(why) && any(colnames(X)[cv != 0] %in% ne))
      why <- paste0("it involves non-estimable coefficient(s) ",
                    quote_list(intersect(colnames(X)[cv != 0], ne)),
                    "; reorder the design terms")
    if (!is.null(why))
      die("contrast ", k, " - ", opts$control, " cannot be estimated (", why, ")")
    C[, j] <- cv
  }

  # limma's warnings ("Coefficients not estimable", "Partial NA coefficients") go to stderr
  # as notes; they are not failures.
  log_warn <- function(w) {
    note("limma warning: ", conditionMessage(w))
    invokeRestart("muffleWarning")
  }
  fit2 <- withCallingHandlers({
    dge <- edgeR::DGEList(counts = inp$counts)
    dge <- edgeR::calcNormFactors(dge)               # TMM
    v <- limma::voom(dge, X)
    t1 <- proc.time()[["elapsed"]]
    fit <- limma::lmFit(v, X)
    note("voom + lmFit done in ", round(proc.time()[["elapsed"]] - t0, 1), " s (lmFit ",
         round(proc.time()[["elapsed"]] - t1, 1), " s)")
    if (any(predicted) && !all(predicted)) {
      # The same model on the real samples alone (columns only predicted samples have are
      # not estimable there and carry no residual): its sigma and df replace the fit's.
      real <- !predicted
      fit_real <- suppressWarnings(limma::lmFit(v[, real], X[real, , drop = FALSE]))
      if (max(fit_real$df.residual) < 1L) {
        # E.g. a held-out cell type whose only real samples are one control per donor: there
        # is no real variance to take; the joint fit's stays (what limma alone would do).
        note("the ", sum(real), " real sample(s) leave no residual degrees of freedom: the ",
             "residual variance from all ", length(real), " samples, predicted ones included")
      } else {
        note("residual variance from the ", sum(real), " real samples (df ", max(fit_real$df.residual),
             "), not the ", sum(predicted), " predicted ones (df of all samples: ", max(fit$df.residual), ")")
        fit$sigma <- fit_real$sigma
        fit$df.residual <- fit_real$df.residual
      }
    }
    limma::eBayes(limma::contrasts.fit(fit, C))
  }, warning = log_warn)

  logfc <- unname(fit2$coefficients)
  pval <- unname(fit2$p.value)
  tstat <- unname(fit2$t)
  aveexpr <- unname(as.double(fit2$Amean))
  if (!identical(dim(logfc), c(G, length(compounds))) || !identical(dim(pval), dim(logfc)) ||
      !identical(dim(tstat), dim(logfc)) || length(aveexpr) != G)
    stop("internal: unexpected result shape")
  # topTable(fit2, coef = k)$adj.P.Val: p.adjust over that coefficient's P values (NAs left
  # out of the count, as p.adjust does), before the NA policy below replaces any.
  adjp <- apply(pval, 2L, stats::p.adjust, method = "BH")
  dim(adjp) <- dim(pval)
  na <- is.na(logfc) | is.na(pval) | is.na(tstat)
  n_na <- colSums(na)
  if (any(na)) {
    note(sum(na), " NA value(s) (", sum(rowSums(na) > 0), " gene(s)) written as logFC = 0, ",
         "t = 0, P = adj.P = 1")
    logfc[na] <- 0
    tstat[na] <- 0
    pval[na] <- 1
    adjp[na] <- 1
  }
  aveexpr[is.na(aveexpr)] <- NaN

  summary_df <- data.frame(
    compound = compounds,
    n_samples = vapply(compounds, function(k) sum(samples$sm_name == k), integer(1)),
    n_genes_p_below_0.05 = colSums(pval < 0.05),
    n_genes_p_below_0.001 = colSums(pval < 0.001),
    n_genes_na = n_na,
    min_p = signif(apply(pval, 2, min), 6),
    check.names = FALSE, stringsAsFactors = FALSE)

  # ---- write: temporary names first, then rename (compounds.txt last)
  tmp <- file.path(opts$output, paste0(".", OUT_FILES, ".tmp", Sys.getpid()))
  names(tmp) <- OUT_FILES
  on.exit(unlink(tmp[file.exists(tmp)]), add = TRUE)
  write_f64 <- function(m, path) {
    con <- file(path, "wb")
    writeBin(as.double(m), con, size = 8, endian = "little")
    close(con)
  }
  write_f64(logfc, tmp[["logfc.f64"]])
  write_f64(pval, tmp[["pvalue.f64"]])
  write_f64(tstat, tmp[["tstat.f64"]])
  write_f64(adjp, tmp[["adjpvalue.f64"]])
  write_f64(aveexpr, tmp[["aveexpr.f64"]])
  con <- file(tmp[["compounds.txt"]], "wb")
  writeLines(enc2utf8(compounds), con, sep = "\n", useBytes = TRUE)
  close(con)
  con <- file(tmp[["summary.tsv"]], "wb")
  writeLines(c(paste(colnames(summary_df), collapse = "\t"),
               do.call(paste, c(lapply(summary_df, function(x) enc2utf8(as.character(x))),
                                sep = "\t"))),
             con, sep = "\n", useBytes = TRUE)
  close(con)
  for (f in OUT_FILES)
    if (!file.rename(tmp[[f]], file.path(opts$output, f)))
      die("cannot rename ", tmp[[f]], " to ", file.path(opts$output, f), status = 1L)

  note(CELL_TYPE, ": ", length(compounds), " contrasts vs `", opts$control, "`; ",
       "median genes with P < 0.05: ", stats::median(summary_df$n_genes_p_below_0.05),
       "; residual df ", S - rank, "; ", round(proc.time()[["elapsed"]] - t0, 1), " s")
  invisible(NULL)
}

tryCatch(main(), error = function(e) {
  die("R: ", conditionMessage(e), status = 1L)
})
