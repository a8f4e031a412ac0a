//! The limma design formula (`de.design`, `--design`), parsed here before it reaches R.
//!
//! R's `as.formula("...")` evaluates its text as R code, so a design string is a code-injection
//! point (`~0+Rpert+system("...")` would run). Only formulas over the pseudo-bulk sample columns
//! are accepted: `~`, terms joined by `+` (or removed with `-`), a term being `0`, `1`, a column,
//! or columns joined by `:` / `*`. `scripts/limma_de.R` checks the parsed R expression again
//! (only these operators and names) before it builds the model matrix. No crate parses R model
//! formulas, and this grammar is a few lines, hence by hand.
use crate::error::{Error, Result};

/// Variables a design may name: `Rpert` (the compound factor) and the sample columns that
/// `pgen-limma` hands to R (see `limma::write_exchange`).
pub const DESIGN_VARIABLES: [&str; 6] = ["Rpert", "donor_id", "plate_name", "row", "well", "cell_type"];

/// A checked design formula: its text (passed to R as is) and the variables it names.
#[derive(Debug, Clone, PartialEq)]
pub struct Design {
    text: String,
    variables: Vec<String>,
}

impl Design {
    /// Parses `text`; errors name `key` (the config key or flag the text came from).
    pub fn parse(text: &str, key: &str) -> Result<Self> {
        let fail = |why: String| Error::param(key, format!("`{text}`: {why} (expected e.g. `~0+Rpert+donor_id+plate_name+row`)"));
        let tokens = tokenize(text).map_err(&fail)?;
        let mut it = tokens.iter().peekable();
        if it.next() != Some(&Token::Tilde) {
            return Err(fail("a design starts with `~`".into()));
        }
        let mut variables: Vec<String> = Vec::new();
        let mut main_effects = Vec::new();
        let mut expect_term = true;
        let mut n_terms = 0;
        for token in it {
            match (expect_term, token) {
                (true, Token::Number(n)) if n == "0" || n == "1" => {
                    expect_term = false;
                    n_terms += 1;
                }
                (true, Token::Name(name)) => {
                    if !DESIGN_VARIABLES.contains(&name.as_str()) {
                        return Err(fail(format!("`{name}` is not a sample column (known: {})", DESIGN_VARIABLES.join(", "))));
                    }
                    if !variables.contains(name) {
                        variables.push(name.clone());
                    }
                    main_effects.push(name.clone());
                    expect_term = false;
                    n_terms += 1;
                }
                (false, Token::Op(':' | '*')) => {
                    main_effects.pop(); // the last name is part of an interaction
                    expect_term = true;
                }
                (false, Token::Op('+' | '-')) => expect_term = true,
                (_, other) => return Err(fail(format!("unexpected {}", other.describe()))),
            }
        }
        if expect_term || n_terms == 0 {
            return Err(fail("it ends without a term".into()));
        }
        if !variables.iter().any(|v| v == "Rpert") {
            return Err(fail("it does not use Rpert (the compound factor)".into()));
        }
        Ok(Self { text: text.to_string(), variables })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn variables(&self) -> &[String] {
        &self.variables
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Tilde,
    Op(char),
    Name(String),
    Number(String),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Tilde => "a second `~`".into(),
            Token::Op(c) => format!("`{c}`"),
            Token::Name(n) => format!("`{n}`"),
            Token::Number(n) => format!("the number `{n}`"),
        }
    }
}

fn tokenize(text: &str) -> std::result::Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '~' {
            tokens.push(Token::Tilde);
            i += 1;
        } else if matches!(c, '+' | '-' | ':' | '*') {
            tokens.push(Token::Op(c));
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            tokens.push(Token::Name(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            tokens.push(Token::Number(chars[start..i].iter().collect()));
        } else {
            return Err(format!("character `{c}` is not allowed in a design formula (only names, 0, 1, ~ + - : *)"));
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_official_design_and_variants_parse() {
        let d = Design::parse("~0+Rpert+donor_id+plate_name+row", "de.design").unwrap();
        assert_eq!(d.variables(), ["Rpert", "donor_id", "plate_name", "row"]);
        assert!(Design::parse("~ Rpert + donor_id:plate_name - 1", "k").is_ok());
        assert!(Design::parse("~0+Rpert", "k").is_ok());
    }

    #[test]
    fn code_and_unknown_columns_are_refused() {
        for (text, why) in [
            ("~0+Rpert+system(\"touch /tmp/x\")", "character `(`"),
            ("~0+Rpert+nonexistent", "`nonexistent` is not a sample column"),
            ("0+Rpert", "starts with `~`"),
            ("~0+donor_id", "does not use Rpert"),
            ("~0+Rpert+", "ends without a term"),
            ("~0+Rpert donor_id", "unexpected `donor_id`"),
            ("~0+Rpert;q()", "character `;`"),
            ("~0+Rpert+2", "the number `2`"),
        ] {
            let err = Design::parse(text, "de.design").unwrap_err().to_string();
            assert!(err.starts_with("de.design: ") && err.contains(why), "{text}: {err}");
        }
    }
}
