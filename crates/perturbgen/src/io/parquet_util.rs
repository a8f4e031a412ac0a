//! Opening and writing Parquet files with the library's error messages and settings.
use crate::atomic::AtomicFile;
use crate::error::{Error, Result};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::path::Path;

/// Opens a parquet file for reading record batches.
pub fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = crate::atomic::open_input(path)?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet(path, e))
}

/// Writer settings shared by every file the pipeline writes: snappy (what pandas writes by
/// default, readable everywhere), dictionary encoding on, statistics on.
pub fn writer_properties(metadata: Vec<(String, String)>) -> WriterProperties {
    let kv = metadata
        .into_iter()
        .map(|(k, v)| parquet::file::metadata::KeyValue::new(k, v))
        .collect::<Vec<_>>();
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(if kv.is_empty() { None } else { Some(kv) })
        .set_max_row_group_row_count(Some(1 << 20))
        .build()
}

/// A parquet file being written atomically: batches go to a temporary file, [`ParquetOut::finish`]
/// closes it and renames it into place.
pub struct ParquetOut {
    file: AtomicFile,
    writer: ArrowWriter<File>,
}

impl ParquetOut {
    pub fn create(path: &Path, schema: SchemaRef, metadata: Vec<(String, String)>) -> Result<Self> {
        let file = AtomicFile::create(path)?;
        let writer = ArrowWriter::try_new(file.file()?, schema, Some(writer_properties(metadata)))
            .map_err(|e| Error::parquet_write(path, e))?;
        Ok(Self { file, writer })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|e| Error::parquet_write(self.file.path(), e))
    }

    /// Ends the current row group (so that the next batch starts a new one).
    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush().map_err(|e| Error::parquet_write(self.file.path(), e))
    }

    pub fn finish(self) -> Result<()> {
        let path = self.file.path().to_path_buf();
        self.writer.close().map_err(|e| Error::parquet_write(&path, e))?;
        self.file.commit()
    }
}

/// Writes one batch as a whole file.
pub fn write_batch(path: &Path, batch: &RecordBatch, metadata: Vec<(String, String)>) -> Result<()> {
    let mut out = ParquetOut::create(path, batch.schema(), metadata)?;
    out.write(batch)?;
    out.finish()
}

/// Reads every batch of a (small) parquet file, checking it can be decoded whole.
pub fn read_all(path: &Path) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let builder = open(path)?;
    let schema = builder.schema().clone();
    let reader = builder.build().map_err(|e| Error::parquet(path, e))?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::arrow(path, e))?;
    Ok((schema, batches))
}

/// The value of a key in the file's key-value metadata.
pub fn key_value(metadata: &parquet::file::metadata::ParquetMetaData, key: &str) -> Option<String> {
    metadata
        .file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
}
