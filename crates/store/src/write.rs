//! Batch writes: all rows of a batch and the cursor move commit together, or not at all.
//!
//! Rows go into the tables with `COPY ... FROM STDIN (FORMAT binary)`, one `COPY` per table, in the transaction that
//! moved the cursor first. The cursor fence guarantees that nothing above the cursor is stored, so rows are copied
//! straight into the tables: a row that is already there (or twice in the batch) violates its primary key and fails
//! the whole batch, it is never skipped nor stored twice.

use std::time::Instant;

use chainmux_core::{BlockPtr, NormalizedBlock, U256};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgDatabaseError;
use sqlx::{Connection, PgConnection, Postgres, Transaction};

use crate::{Result, Store, StoreError};

/// Rows inserted by one batch, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub blocks: u64,
    pub transactions: u64,
    pub logs: u64,
    pub transfers: u64,
    pub instructions: u64,
    pub events: u64,
    /// Contracts created by configured factories.
    pub contracts: u64,
}

impl WriteStats {
    pub fn rows(&self) -> u64 {
        self.blocks
            + self.transactions
            + self.logs
            + self.transfers
            + self.instructions
            + self.events
            + self.contracts
    }
}

pub(crate) fn to_i64(value: u64, what: &'static str) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange(what))
}

pub(crate) fn to_i32(value: impl TryInto<i32>, what: &'static str) -> Result<i32> {
    value.try_into().map_err(|_| StoreError::OutOfRange(what))
}

impl Store {
    /// Writes `blocks` and moves the cursor of `chain` from `expected` to the last block, in one transaction.
    ///
    /// `blocks` must continue `expected` (the first block's parent is `expected`, each next block's parent the one
    /// before). The cursor update is conditional on the cursor still being `expected`; if another writer moved it,
    /// nothing is written and [`StoreError::CursorMoved`] is returned. A row that is already stored, or that the
    /// batch holds twice, fails the whole batch with [`StoreError::Discontinuous`] naming the table and the key.
    pub async fn write_batch(
        &self,
        chain: &str,
        expected: Option<BlockPtr>,
        blocks: &[NormalizedBlock],
    ) -> Result<WriteStats> {
        let Some(last) = blocks.last() else { return Ok(WriteStats::default()) };
        check_continuity(chain, expected, blocks)?;
        let started = Instant::now();

        let mut conn = CloseIfCancelled { conn: self.pool.acquire().await?, done: false };
        let written = write_rows(&mut conn.conn, chain, expected, last.ptr, blocks, self.fence).await;
        conn.done = true;
        let stats = written?;

        metrics::histogram!("chainmux_store_write_seconds", "chain" => chain.to_owned())
            .record(started.elapsed().as_secs_f64());
        for (table, rows) in [
            ("blocks", stats.blocks),
            ("transactions", stats.transactions),
            ("logs", stats.logs),
            ("transfers", stats.transfers),
            ("instructions", stats.instructions),
            ("events", stats.events),
            ("contracts", stats.contracts),
        ] {
            metrics::counter!("chainmux_store_rows_written_total", "chain" => chain.to_owned(), "table" => table)
                .increment(rows);
        }
        Ok(stats)
    }
}

/// A pooled connection that is closed instead of going back to the pool when dropped before `done`: a write
/// whose future is dropped halfway may leave the connection inside a `COPY`, out of step with sqlx (which would
/// hand the next query another statement's answer). The server rolls the open transaction back when it closes.
struct CloseIfCancelled {
    conn: PoolConnection<Postgres>,
    done: bool,
}

impl Drop for CloseIfCancelled {
    fn drop(&mut self) {
        if !self.done {
            self.conn.close_on_drop();
        }
    }
}

/// The transaction of [`Store::write_batch`]: cursor move first, then one `COPY` per table, then commit.
async fn write_rows(
    conn: &mut PgConnection,
    chain: &str,
    expected: Option<BlockPtr>,
    to: BlockPtr,
    blocks: &[NormalizedBlock],
    fence: Option<i64>,
) -> Result<WriteStats> {
    let mut tx = conn.begin().await?;
    if let Some(epoch) = fence {
        let first = blocks.first().map_or(to.number, |b| b.ptr.number);
        let write = crate::leader::TermWrite::Batch { first, last: to.number };
        crate::leader::check_fence(&mut tx, chain, epoch, write).await?;
    }
    // The cursor row goes first: its row lock serialises concurrent writers of one chain.
    move_cursor(&mut tx, chain, expected, to).await?;
    let mut rows = CopyRows::default();
    let stats = WriteStats {
        blocks: copy_table(&mut tx, &mut rows, Table::Blocks, chain, blocks).await?,
        transactions: copy_table(&mut tx, &mut rows, Table::Transactions, chain, blocks).await?,
        logs: copy_table(&mut tx, &mut rows, Table::Logs, chain, blocks).await?,
        transfers: copy_table(&mut tx, &mut rows, Table::Transfers, chain, blocks).await?,
        instructions: copy_table(&mut tx, &mut rows, Table::Instructions, chain, blocks).await?,
        events: copy_table(&mut tx, &mut rows, Table::Events, chain, blocks).await?,
        contracts: insert_created_contracts(&mut tx, chain, blocks).await?,
    };
    drop(rows);
    crate::feed::notify(&mut tx, chain).await?;
    tx.commit().await?;
    Ok(stats)
}

fn check_continuity(chain: &str, expected: Option<BlockPtr>, blocks: &[NormalizedBlock]) -> Result<()> {
    let discontinuous = |reason: String| StoreError::Discontinuous { chain: chain.to_owned(), reason };
    let mut previous = expected;
    for block in blocks {
        if let Some(prev) = previous
            && block.parent != Some(prev)
        {
            return Err(discontinuous(format!(
                "block {} has parent {:?}, expected {} {}",
                block.ptr.number, block.parent, prev.number, prev.hash
            )));
        }
        previous = Some(block.ptr);
    }
    Ok(())
}

async fn move_cursor(
    tx: &mut Transaction<'_, Postgres>,
    chain: &str,
    expected: Option<BlockPtr>,
    to: BlockPtr,
) -> Result<()> {
    let number = to_i64(to.number, "block number")?;
    let moved = match expected {
        None => {
            sqlx::query(
                "INSERT INTO cursors (chain, block_number, block_hash) VALUES ($1, $2, $3) \
                 ON CONFLICT (chain) DO NOTHING",
            )
            .bind(chain)
            .bind(number)
            .bind(to.hash.as_slice())
            .execute(&mut **tx)
            .await?
        }
        Some(from) => {
            sqlx::query(
                "UPDATE cursors SET block_number = $2, block_hash = $3, updated_at = now() \
                 WHERE chain = $1 AND block_number = $4 AND block_hash = $5",
            )
            .bind(chain)
            .bind(number)
            .bind(to.hash.as_slice())
            .bind(to_i64(from.number, "block number")?)
            .bind(from.hash.as_slice())
            .execute(&mut **tx)
            .await?
        }
    };
    if moved.rows_affected() == 1 {
        return Ok(());
    }
    let actual =
        sqlx::query_as::<_, (i64, Vec<u8>)>("SELECT block_number, block_hash FROM cursors WHERE chain = $1")
            .bind(chain)
            .fetch_optional(&mut **tx)
            .await?
            .map(|(number, hash)| crate::read::ptr_from(number, hash))
            .transpose()?;
    Err(StoreError::CursorMoved { chain: chain.to_owned(), expected, actual })
}

/// The tables of chain data, in the order a batch writes them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Table {
    Blocks,
    Transactions,
    Logs,
    Transfers,
    Instructions,
    Events,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Self::Blocks => "blocks",
            Self::Transactions => "transactions",
            Self::Logs => "logs",
            Self::Transfers => "transfers",
            Self::Instructions => "instructions",
            Self::Events => "events",
        }
    }

    /// The `COPY` statement; its column list is the order in which [`Table::encode`] writes each row's fields.
    fn copy_statement(self) -> &'static str {
        match self {
            Self::Blocks => {
                "COPY blocks (chain, number, hash, parent_hash, parent_number, height, timestamp, tx_count, \
                 log_count) FROM STDIN (FORMAT binary)"
            }
            Self::Transactions => {
                "COPY transactions (chain, block_number, block_hash, tx_index, hash, from_address, to_address, \
                 value, nonce, gas_limit, gas_price, gas_used, status, contract_address, input, fee, error) \
                 FROM STDIN (FORMAT binary)"
            }
            Self::Logs => {
                "COPY logs (chain, block_number, block_hash, log_index, tx_hash, tx_index, address, \
                 topic0, topic1, topic2, topic3, data) FROM STDIN (FORMAT binary)"
            }
            Self::Transfers => {
                "COPY transfers (chain, block_number, block_hash, log_index, batch_index, standard, tx_hash, \
                 token, from_address, to_address, amount, token_id, from_owner, to_owner, decimals) \
                 FROM STDIN (FORMAT binary)"
            }
            Self::Instructions => {
                "COPY instructions (chain, block_number, block_hash, tx_index, position, tx_hash, outer_index, \
                 inner_index, stack_height, program, accounts, data, logs) FROM STDIN (FORMAT binary)"
            }
            Self::Events => {
                "COPY events (chain, block_number, block_hash, log_index, contract, tx_hash, tx_index, address, \
                 name, signature, args) FROM STDIN (FORMAT binary)"
            }
        }
    }

    /// Appends the table's rows of `blocks` to `out`.
    fn encode(self, out: &mut CopyRows, chain: &str, blocks: &[NormalizedBlock]) -> Result<()> {
        let chain = chain.as_bytes();
        for block in blocks {
            let number = to_i64(block.ptr.number, "block number")?;
            let hash = block.ptr.hash.as_slice();
            match self {
                Self::Blocks => {
                    out.row(9);
                    out.bytes(chain)?;
                    out.int8(number);
                    out.bytes(hash)?;
                    out.bytes(block.parent_hash().as_slice())?;
                    out.opt_int8(block.parent.map(|p| to_i64(p.number, "parent number")).transpose()?);
                    out.opt_int8(block.height.map(|h| to_i64(h, "height")).transpose()?);
                    out.int8(to_i64(block.timestamp, "timestamp")?);
                    out.int4(to_i32(block.transactions.len(), "tx_count")?);
                    out.int4(to_i32(block.logs.len(), "log_count")?);
                }
                Self::Transactions => {
                    for t in &block.transactions {
                        out.row(17);
                        out.bytes(chain)?;
                        out.int8(number);
                        out.bytes(hash)?;
                        out.int4(to_i32(t.index, "tx_index")?);
                        out.bytes(&t.hash)?;
                        out.bytes(&t.from)?;
                        out.opt_bytes(t.to.as_ref())?;
                        out.numeric(&t.value);
                        out.numeric(&U256::from(t.nonce));
                        out.numeric(&U256::from(t.gas_limit));
                        out.opt_numeric(t.gas_price.map(U256::from).as_ref());
                        out.opt_numeric(t.gas_used.map(U256::from).as_ref());
                        match t.status {
                            Some(status) => out.bool(status),
                            None => out.null(),
                        }
                        out.opt_bytes(t.contract_address.as_ref())?;
                        out.bytes(&t.input)?;
                        out.opt_numeric(t.fee.map(U256::from).as_ref());
                        out.opt_text(t.error.as_deref())?;
                    }
                }
                Self::Logs => {
                    for log in &block.logs {
                        out.row(12);
                        out.bytes(chain)?;
                        out.int8(number);
                        out.bytes(hash)?;
                        out.int4(to_i32(log.log_index, "log_index")?);
                        out.bytes(&log.tx_hash)?;
                        out.int4(to_i32(log.tx_index, "tx_index")?);
                        out.bytes(&log.address)?;
                        for i in 0..4 {
                            out.opt_bytes(log.topics.get(i).map(|t| t.as_slice()))?;
                        }
                        out.bytes(&log.data)?;
                    }
                }
                Self::Transfers => {
                    for t in &block.transfers {
                        out.row(15);
                        out.bytes(chain)?;
                        out.int8(number);
                        out.bytes(hash)?;
                        out.int4(to_i32(t.log_index, "log_index")?);
                        out.int4(to_i32(t.batch_index, "batch_index")?);
                        out.bytes(t.standard.as_str().as_bytes())?;
                        out.bytes(&t.tx_hash)?;
                        out.opt_bytes(t.token.as_ref())?;
                        out.bytes(&t.from)?;
                        out.bytes(&t.to)?;
                        out.numeric(&t.amount);
                        out.opt_numeric(t.token_id.as_ref());
                        out.opt_bytes(t.from_owner.as_ref())?;
                        out.opt_bytes(t.to_owner.as_ref())?;
                        match t.decimals {
                            Some(decimals) => out.int2(i16::from(decimals)),
                            None => out.null(),
                        }
                    }
                }
                Self::Instructions => {
                    for i in &block.instructions {
                        out.row(13);
                        out.bytes(chain)?;
                        out.int8(number);
                        out.bytes(hash)?;
                        out.int4(to_i32(i.tx_index, "tx_index")?);
                        out.int4(to_i32(i.position, "position")?);
                        out.bytes(&i.tx_hash)?;
                        out.int4(to_i32(i.outer_index, "outer_index")?);
                        match i.inner_index {
                            Some(inner) => out.int4(to_i32(inner, "inner_index")?),
                            None => out.null(),
                        }
                        out.int4(to_i32(i.stack_height, "stack_height")?);
                        out.bytes(&i.program)?;
                        out.bytea_array(&i.accounts)?;
                        out.bytes(&i.data)?;
                        out.text_array(&i.logs)?;
                    }
                }
                Self::Events => {
                    for e in &block.events {
                        out.row(11);
                        out.bytes(chain)?;
                        out.int8(number);
                        out.bytes(hash)?;
                        out.int4(to_i32(e.log_index, "log_index")?);
                        out.text(&e.contract)?;
                        out.bytes(&e.tx_hash)?;
                        out.int4(to_i32(e.tx_index, "tx_index")?);
                        out.bytes(&e.address)?;
                        out.text(&e.name)?;
                        out.text(&e.signature)?;
                        out.jsonb(&e.args)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Records the contracts configured factories created in `blocks`, in the batch's transaction, so a child is
/// stored exactly when the block that created it is. A child already recorded (a factory announcing the same
/// address twice, e.g. a CREATE2 redeployment) keeps its first creation.
pub(crate) async fn insert_created_contracts(
    tx: &mut Transaction<'_, Postgres>,
    chain: &str,
    blocks: &[NormalizedBlock],
) -> Result<u64> {
    let mut names = Vec::new();
    let mut addresses = Vec::new();
    let mut factories = Vec::new();
    let mut numbers = Vec::new();
    let mut hashes = Vec::new();
    let mut tx_hashes = Vec::new();
    let mut log_indexes = Vec::new();
    for block in blocks {
        for created in &block.created_contracts {
            names.push(created.contract.as_str());
            addresses.push(created.address.as_ref());
            factories.push(created.factory.as_ref());
            numbers.push(to_i64(block.ptr.number, "block number")?);
            hashes.push(block.ptr.hash.as_slice());
            tx_hashes.push(created.tx_hash.as_ref());
            log_indexes.push(to_i32(created.log_index, "log_index")?);
        }
    }
    if names.is_empty() {
        return Ok(0);
    }
    let inserted = sqlx::query(
        "INSERT INTO contracts (chain, name, address, factory, block_number, block_hash, tx_hash, log_index) \
         SELECT $1, * FROM UNNEST($2::text[], $3::bytea[], $4::bytea[], $5::int8[], $6::bytea[], $7::bytea[], \
         $8::int4[]) ON CONFLICT (chain, name, address) DO NOTHING",
    )
    .bind(chain)
    .bind(names)
    .bind(addresses)
    .bind(factories)
    .bind(numbers)
    .bind(hashes)
    .bind(tx_hashes)
    .bind(log_indexes)
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected())
}

/// Type OIDs of array elements (`pg_type.oid`, fixed for built-in types).
const BYTEA_OID: u32 = 17;
const TEXT_OID: u32 = 25;

/// Size of the `CopyData` messages the encoded rows are sent in: the server works on one while the next arrives.
const COPY_CHUNK: usize = 256 * 1024;

/// Copies the rows of `table` in `blocks` into the table; returns how many rows the server inserted.
pub(crate) async fn copy_table(
    conn: &mut PgConnection,
    rows: &mut CopyRows,
    table: Table,
    chain: &str,
    blocks: &[NormalizedBlock],
) -> Result<u64> {
    // Everything that can fail on our side fails here, before the COPY starts.
    rows.start();
    table.encode(rows, chain, blocks)?;
    if rows.rows == 0 {
        return Ok(0);
    }
    let data = rows.finish();
    let copied = async {
        let mut copy = conn.copy_in_raw(table.copy_statement()).await?;
        for chunk in data.chunks(COPY_CHUNK) {
            copy.send(chunk).await?;
        }
        copy.finish().await
    }
    .await;
    copied.map_err(|err| copy_failed(err, table, chain, blocks))
}

/// A primary-key violation means the batch overlaps stored rows (nothing above the cursor may exist, so the store
/// is inconsistent) or repeats a row itself: either way not something a retry fixes, unlike other database errors.
fn copy_failed(err: sqlx::Error, table: Table, chain: &str, blocks: &[NormalizedBlock]) -> StoreError {
    let Some(db) = err.as_database_error().filter(|db| db.is_unique_violation()) else {
        return StoreError::Database(err);
    };
    let detail = db.try_downcast_ref::<PgDatabaseError>().and_then(PgDatabaseError::detail);
    let (first, last) = match (blocks.first(), blocks.last()) {
        (Some(first), Some(last)) => (first.ptr.number, last.ptr.number),
        _ => (0, 0),
    };
    StoreError::Discontinuous {
        chain: chain.to_owned(),
        reason: format!(
            "table {}: a row of blocks {first}..={last} is already stored or repeated in the batch: {}{}",
            table.name(),
            db.message(),
            detail.map(|d| format!(" ({d})")).unwrap_or_default(),
        ),
    }
}

/// Rows in PostgreSQL's binary `COPY` format: a header, per row the field count and each field as a length (-1
/// for NULL) followed by the type's binary ("send") representation, and a trailer.
#[derive(Debug, Default)]
pub(crate) struct CopyRows {
    buf: Vec<u8>,
    rows: u64,
}

impl CopyRows {
    /// Signature, flags (no OIDs), header extension length.
    const HEADER: &'static [u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

    fn start(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(Self::HEADER);
        self.rows = 0;
    }

    fn finish(&mut self) -> &[u8] {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        &self.buf
    }

    fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self.rows += 1;
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn int8(&mut self, value: i64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    fn opt_int8(&mut self, value: Option<i64>) {
        match value {
            Some(value) => self.int8(value),
            None => self.null(),
        }
    }

    fn int2(&mut self, value: i16) {
        self.buf.extend_from_slice(&2i32.to_be_bytes());
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    fn int4(&mut self, value: i32) {
        self.buf.extend_from_slice(&4i32.to_be_bytes());
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    fn bool(&mut self, value: bool) {
        self.buf.extend_from_slice(&1i32.to_be_bytes());
        self.buf.push(u8::from(value));
    }

    /// `bytea` as is, or `text` as UTF-8 (the connection's client encoding).
    fn bytes(&mut self, value: &[u8]) -> Result<()> {
        let len = to_i32(value.len(), "field length")?;
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(value);
        Ok(())
    }

    fn opt_bytes(&mut self, value: Option<impl AsRef<[u8]>>) -> Result<()> {
        match value {
            Some(value) => self.bytes(value.as_ref()),
            None => {
                self.null();
                Ok(())
            }
        }
    }

    /// `text`. PostgreSQL text cannot hold NUL, which a Rust string (a Solana log line) can: each one is stored as
    /// U+FFFD, the replacement character, rather than failing the batch and with it the chain's indexing.
    fn text(&mut self, value: &str) -> Result<()> {
        if value.contains('\0') {
            self.bytes(value.replace('\0', "\u{FFFD}").as_bytes())
        } else {
            self.bytes(value.as_bytes())
        }
    }

    /// `jsonb`: a format version byte (1) followed by the JSON text. jsonb cannot hold `\u0000`, so producers
    /// replace NUL in strings (as [`CopyRows::text`] does); a text the server rejects fails the batch.
    fn jsonb(&mut self, json: &str) -> Result<()> {
        let len = to_i32(json.len() + 1, "field length")?;
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.push(1);
        self.buf.extend_from_slice(json.as_bytes());
        Ok(())
    }

    fn opt_text(&mut self, value: Option<&str>) -> Result<()> {
        match value {
            Some(value) => self.text(value),
            None => {
                self.null();
                Ok(())
            }
        }
    }

    /// `bytea[]`: a one-dimensional array without NULLs (see [`CopyRows::array`]).
    fn bytea_array(&mut self, values: &[impl AsRef<[u8]>]) -> Result<()> {
        self.array(BYTEA_OID, values, |out, value| out.bytes(value.as_ref()))
    }

    /// `text[]`: a one-dimensional array without NULLs, each element as [`CopyRows::text`].
    fn text_array(&mut self, values: &[String]) -> Result<()> {
        self.array(TEXT_OID, values, |out, value| out.text(value))
    }

    /// An array's binary form: dimension count, has-NULLs flag, element type OID (which the server checks against
    /// the column's), per dimension its length and lower bound (1), then each element as a field of its own
    /// (length, then the element type's binary form). An empty array has no dimensions at all. The field's length
    /// goes in front, so it is patched in once the elements are written.
    fn array<T>(
        &mut self,
        element_oid: u32,
        values: &[T],
        mut element: impl FnMut(&mut Self, &T) -> Result<()>,
    ) -> Result<()> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes());
        let dimensions: i32 = if values.is_empty() { 0 } else { 1 };
        self.buf.extend_from_slice(&dimensions.to_be_bytes());
        self.buf.extend_from_slice(&0i32.to_be_bytes()); // no NULL elements
        self.buf.extend_from_slice(&element_oid.to_be_bytes());
        if !values.is_empty() {
            self.buf.extend_from_slice(&to_i32(values.len(), "array length")?.to_be_bytes());
            self.buf.extend_from_slice(&1i32.to_be_bytes()); // lower bound
        }
        for value in values {
            element(self, value)?;
        }
        let len = to_i32(self.buf.len() - start - 4, "field length")?;
        self.buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// `numeric`: digit count, weight (of the first digit, in powers of 10000), sign, display scale, then the
    /// base-10000 digits, most significant first. Exact for every `U256`; trailing zero digits are left out, as
    /// PostgreSQL itself does.
    fn numeric(&mut self, value: &U256) {
        let (digits, len) = base_10000(value);
        let zeros = digits[..len].iter().take_while(|&&d| d == 0).count();
        let count = len - zeros;
        // At most 20 digits: these casts cannot truncate.
        let weight = len.saturating_sub(1) as i16;
        self.buf.extend_from_slice(&(8 + 2 * count as i32).to_be_bytes());
        self.buf.extend_from_slice(&(count as i16).to_be_bytes());
        self.buf.extend_from_slice(&weight.to_be_bytes());
        self.buf.extend_from_slice(&0u16.to_be_bytes()); // sign: positive
        self.buf.extend_from_slice(&0u16.to_be_bytes()); // display scale: integer
        for digit in digits[zeros..len].iter().rev() {
            self.buf.extend_from_slice(&digit.to_be_bytes());
        }
    }

    fn opt_numeric(&mut self, value: Option<&U256>) {
        match value {
            Some(value) => self.numeric(value),
            None => self.null(),
        }
    }
}

/// `value` in base 10000, least significant digit first, without leading zeros (zero has no digits).
/// 2^256 − 1 has 78 decimal digits, so 20 base-10000 digits suffice.
fn base_10000(value: &U256) -> ([u16; 20], usize) {
    /// 10000^4: the largest power of 10000 below 2^64.
    const CHUNK: u128 = 10_000_000_000_000_000;
    let mut digits = [0u16; 20];
    let mut len = 0;
    let mut limbs = *value.as_limbs();
    let mut top = limbs.iter().rposition(|&limb| limb != 0).map_or(0, |i| i + 1);
    // Long division by 10000^4 while more than one 64-bit limb is left; each remainder is four digits.
    while top > 1 {
        let mut rem = 0u128;
        for limb in limbs[..top].iter_mut().rev() {
            let current = (rem << 64) | u128::from(*limb);
            // current < CHUNK · 2^64, so the quotient fits a limb.
            *limb = (current / CHUNK) as u64;
            rem = current % CHUNK;
        }
        let mut rem = rem as u64;
        for _ in 0..4 {
            digits[len] = (rem % 10_000) as u16;
            rem /= 10_000;
            len += 1;
        }
        while top > 0 && limbs[top - 1] == 0 {
            top -= 1;
        }
    }
    let mut rest = limbs[0];
    while rest != 0 {
        digits[len] = (rest % 10_000) as u16;
        rest /= 10_000;
        len += 1;
    }
    (digits, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decimal text of a base-10000 digit sequence, as PostgreSQL prints it.
    fn decimal(value: &U256) -> String {
        let (digits, len) = base_10000(value);
        if len == 0 {
            return "0".into();
        }
        let mut text = digits[len - 1].to_string();
        for digit in digits[..len - 1].iter().rev() {
            assert!(*digit < 10_000);
            text.push_str(&format!("{digit:04}"));
        }
        text
    }

    #[test]
    fn base_10000_is_exact() {
        let mut values = vec![U256::ZERO, U256::MAX, U256::from(u64::MAX), U256::from(u128::MAX)];
        for shift in 0..256 {
            let power = U256::from(1u64) << shift;
            values.extend([power, power - U256::from(1u64), power + U256::from(1u64)]);
        }
        let mut power = U256::from(1u64);
        while let Some(next) = power.checked_mul(U256::from(10u64)) {
            values.extend([
                power,
                power - U256::from(1u64),
                power + U256::from(1u64),
                power * U256::from(7u64),
            ]);
            power = next;
        }
        // A deterministic spread of full-width values.
        let mut x = U256::from(0x9e37_79b9_7f4a_7c15u64);
        for _ in 0..2000 {
            x = x
                .wrapping_mul(U256::from(6_364_136_223_846_793_005u64))
                .wrapping_add(U256::from(1_442_695_040_888_963_407u64));
            values.extend([x, x >> 64, x >> 128, x >> 192, x >> 200]);
        }
        for value in values {
            assert_eq!(decimal(&value), value.to_string(), "{value:#x}");
        }
    }

    #[test]
    fn numeric_encoding_strips_trailing_zero_digits() {
        let mut rows = CopyRows::default();
        rows.numeric(&U256::from(10u64).pow(U256::from(8u64)));
        // length 10: ndigits 1, weight 2, sign 0, dscale 0, digit 1
        assert_eq!(rows.buf, [0, 0, 0, 10, 0, 1, 0, 2, 0, 0, 0, 0, 0, 1]);
        rows.buf.clear();
        rows.numeric(&U256::ZERO);
        assert_eq!(rows.buf, [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
        rows.buf.clear();
        rows.numeric(&U256::from(123_456_789u64));
        // 1 2345 6789: ndigits 3, weight 2
        assert_eq!(rows.buf, [0, 0, 0, 14, 0, 3, 0, 2, 0, 0, 0, 0, 0, 1, 0x09, 0x29, 0x1a, 0x85]);
    }

    #[test]
    fn array_encoding() {
        let mut rows = CopyRows::default();
        rows.bytea_array(&[] as &[Vec<u8>]).expect("empty");
        // length 12: no dimensions, no NULLs, element type bytea
        assert_eq!(rows.buf, [0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 17]);
        rows.buf.clear();
        rows.bytea_array(&[vec![0xab, 0xcd], vec![]]).expect("two elements");
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 30, // field length
            0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 17, // 1 dimension, no NULLs, bytea
            0, 0, 0, 2, 0, 0, 0, 1, // 2 elements, lower bound 1
            0, 0, 0, 2, 0xab, 0xcd, // element 1
            0, 0, 0, 0, // element 2: empty, not NULL
        ];
        assert_eq!(rows.buf, expected);
        rows.buf.clear();
        rows.text_array(&["a\0b".to_owned()]).expect("text");
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 29,
            0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 25, // 1 dimension, no NULLs, text
            0, 0, 0, 1, 0, 0, 0, 1,
            0, 0, 0, 5, b'a', 0xef, 0xbf, 0xbd, b'b', // NUL stored as U+FFFD
        ];
        assert_eq!(rows.buf, expected);
    }
}
