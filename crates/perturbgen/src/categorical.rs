//! A column of repeated strings stored once each (levels) plus one code per row, the way pandas'
//! `category` dtype does; obs tables repeat a handful of plate, well and compound names over
//! hundreds of thousands of cells.
use std::collections::HashMap;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Categorical {
    levels: Vec<String>,
    codes: Vec<u32>,
    index: HashMap<String, u32>,
}

impl Categorical {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self { codes: Vec::with_capacity(n), ..Self::default() }
    }

    /// Appends a value, adding it to the levels the first time it is seen.
    pub fn push(&mut self, value: &str) {
        let code = self.code_or_insert(value);
        self.codes.push(code);
    }

    pub fn code_or_insert(&mut self, value: &str) -> u32 {
        if let Some(&c) = self.index.get(value) {
            return c;
        }
        let c = self.levels.len() as u32;
        self.levels.push(value.to_string());
        self.index.insert(value.to_string(), c);
        c
    }

    pub fn get(&self, row: usize) -> &str {
        &self.levels[self.codes[row] as usize]
    }

    pub fn code(&self, row: usize) -> u32 {
        self.codes[row]
    }

    pub fn codes(&self) -> &[u32] {
        &self.codes
    }

    pub fn levels(&self) -> &[String] {
        &self.levels
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The rows `rows`, in that order, keeping the level table.
    pub fn take(&self, rows: &[usize]) -> Self {
        Self {
            levels: self.levels.clone(),
            codes: rows.iter().map(|&r| self.codes[r]).collect(),
            index: self.index.clone(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.codes.iter().map(|&c| self.levels[c as usize].as_str())
    }

    /// Heap bytes held (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        let strings: usize = self.levels.iter().map(|s| s.capacity() + std::mem::size_of::<String>()).sum();
        strings * 2 + self.codes.capacity() * 4 + self.index.capacity() * 8
    }
}

impl<'a> FromIterator<&'a str> for Categorical {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        let mut c = Categorical::new();
        for v in iter {
            c.push(v);
        }
        c
    }
}
