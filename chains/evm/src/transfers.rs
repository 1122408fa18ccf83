//! Token transfers decoded from event logs.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::SolEvent;
use chainmux_core::{Log, Transfer, TransferStandard};

mod events {
    alloy::sol! {
    /// ERC-20 (value in data) and ERC-721 (tokenId as a fourth topic) share this signature.
    event Transfer(address indexed from, address indexed to, uint256 value);
    event TransferSingle(address indexed operator, address indexed from, address indexed to, uint256 id, uint256 value);
    event TransferBatch(address indexed operator, address indexed from, address indexed to, uint256[] ids, uint256[] values);
    }
}
use events::{Transfer as TransferEvent, TransferBatch, TransferSingle};

fn topic_address(topic: &B256) -> Bytes {
    Bytes::copy_from_slice(Address::from_word(*topic).as_slice())
}

/// Transfers described by `log`. Empty for logs that are not transfer events, or that use a transfer signature
/// with a shape no standard defines (such logs stay in `logs`; they are just not transfers).
pub fn decode_transfers(log: &Log) -> Vec<Transfer> {
    let Some(signature) = log.topics.first() else { return Vec::new() };
    let transfer = |standard, from: &B256, to: &B256, amount, token_id, batch_index| Transfer {
        tx_hash: log.tx_hash.clone(),
        log_index: log.log_index,
        batch_index,
        standard,
        token: Some(log.address.clone()),
        from: topic_address(from),
        to: topic_address(to),
        amount,
        token_id,
        from_owner: None,
        to_owner: None,
        decimals: None,
    };
    match (*signature, log.topics.as_slice()) {
        (TransferEvent::SIGNATURE_HASH, [_, from, to]) if log.data.len() == 32 => {
            let amount = U256::from_be_slice(&log.data);
            vec![transfer(TransferStandard::Erc20, from, to, amount, None, 0)]
        }
        (TransferEvent::SIGNATURE_HASH, [_, from, to, token_id]) if log.data.is_empty() => {
            let token_id = U256::from_be_bytes(token_id.0);
            vec![transfer(TransferStandard::Erc721, from, to, U256::from(1), Some(token_id), 0)]
        }
        (TransferSingle::SIGNATURE_HASH, [_, _, from, to]) if log.data.len() == 64 => {
            let id = U256::from_be_slice(&log.data[..32]);
            let amount = U256::from_be_slice(&log.data[32..]);
            vec![transfer(TransferStandard::Erc1155, from, to, amount, Some(id), 0)]
        }
        (TransferBatch::SIGNATURE_HASH, [_, _, from, to]) => {
            match TransferBatch::decode_raw_log(log.topics.iter().copied(), &log.data) {
                Ok(batch) if batch.ids.len() == batch.values.len() => batch
                    .ids
                    .iter()
                    .zip(&batch.values)
                    .zip(0u32..)
                    .map(|((id, amount), i)| {
                        transfer(TransferStandard::Erc1155, from, to, *amount, Some(*id), i)
                    })
                    .collect(),
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::sol_types::SolValue;

    fn word(address: Address) -> B256 {
        address.into_word()
    }

    fn log(topics: Vec<B256>, data: Vec<u8>) -> Log {
        Log {
            tx_hash: Bytes::from(vec![0xaa; 32]),
            tx_index: 0,
            log_index: 7,
            address: Bytes::from(vec![0x11; 20]),
            topics,
            data: data.into(),
        }
    }

    #[test]
    fn erc20_and_erc721_share_a_signature_but_not_a_shape() {
        let (a, b) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let erc20 = decode_transfers(&log(
            vec![TransferEvent::SIGNATURE_HASH, word(a), word(b)],
            U256::from(500).to_be_bytes_vec(),
        ));
        assert_eq!(erc20.len(), 1);
        assert_eq!(erc20[0].standard, TransferStandard::Erc20);
        assert_eq!(erc20[0].amount, U256::from(500));
        assert_eq!(erc20[0].from.as_ref(), a.as_slice());
        assert_eq!(erc20[0].to.as_ref(), b.as_slice());

        let erc721 = decode_transfers(&log(
            vec![TransferEvent::SIGNATURE_HASH, word(a), word(b), B256::with_last_byte(9)],
            vec![],
        ));
        assert_eq!(erc721[0].standard, TransferStandard::Erc721);
        assert_eq!(erc721[0].token_id, Some(U256::from(9)));
        assert_eq!(erc721[0].amount, U256::from(1));
    }

    #[test]
    fn erc1155_batch_yields_one_transfer_per_element() {
        let (op, a, b) = (Address::repeat_byte(3), Address::repeat_byte(1), Address::repeat_byte(2));
        let ids = vec![U256::from(1), U256::from(2), U256::from(3)];
        let values = vec![U256::from(10), U256::from(20), U256::from(30)];
        let data = (ids.clone(), values.clone()).abi_encode_params();
        let transfers =
            decode_transfers(&log(vec![TransferBatch::SIGNATURE_HASH, word(op), word(a), word(b)], data));
        assert_eq!(transfers.len(), 3);
        for (i, t) in transfers.iter().enumerate() {
            assert_eq!(t.batch_index, i as u32);
            assert_eq!(t.token_id, Some(ids[i]));
            assert_eq!(t.amount, values[i]);
            assert_eq!(t.standard, TransferStandard::Erc1155);
        }
    }

    #[test]
    fn malformed_transfer_shapes_are_not_transfers() {
        let a = Address::repeat_byte(1);
        // ERC-20 signature with a truncated amount.
        assert!(
            decode_transfers(&log(vec![TransferEvent::SIGNATURE_HASH, word(a), word(a)], vec![1, 2]))
                .is_empty()
        );
        // Batch with mismatched array lengths.
        let data = (vec![U256::from(1)], vec![U256::from(1), U256::from(2)]).abi_encode_params();
        assert!(
            decode_transfers(&log(vec![TransferBatch::SIGNATURE_HASH, word(a), word(a), word(a)], data))
                .is_empty()
        );
        assert!(decode_transfers(&log(vec![], vec![])).is_empty());
    }
}
