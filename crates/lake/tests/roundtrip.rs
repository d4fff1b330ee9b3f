//! Property: whatever readings go into the lake writer (extreme numbers, long and
//! non-ASCII strings, any number of row groups), the `parquet` crate's reader gives
//! back exactly the same readings, in the same order.

use bytes::Bytes;
use proptest::prelude::*;
use pulselake_domain::{Metric, Reading, ReadingId, Source};
use pulselake_lake::{FileLayout, LakeFile, encode_readings};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,24}",
        "\\PC{0,40}",
        "[é✓中𝄞a]{1,200}",
        Just(String::new()),
        "x{300}",
    ]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        -1e6f64..1e6,
        Just(f64::MAX),
        Just(f64::MIN),
        Just(f64::MIN_POSITIVE),
        Just(0.0),
        Just(-0.0),
        any::<f64>().prop_filter("the lake holds finite values", |v| v.is_finite()),
    ]
}

fn reading() -> impl Strategy<Value = Reading<'static>> {
    (
        any::<[u8; 16]>(),
        (text(), text(), text(), text()),
        value(),
        (any::<i64>(), -4_000_000_000_000i64..4_000_000_000_000),
        any::<bool>(),
    )
        .prop_map(
            |(id, (subject, device, sensor, source_ref), value, (measured, received), stream)| {
                Reading {
                    reading_id: ReadingId(id),
                    subject_id: subject.into(),
                    device_id: device.into(),
                    sensor_id: sensor.into(),
                    metric: Metric::Glucose,
                    value,
                    measured_at: measured,
                    received_at: received,
                    source: if stream { Source::Stream } else { Source::File },
                    source_ref: source_ref.into(),
                    cohort: None,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn readings_read_back_exactly_as_written(
        rows in prop::collection::vec(reading(), 0..800),
        group in 1usize..400,
        sorted in any::<bool>(),
    ) {
        let layout = FileLayout { row_group_rows: group, sorted_by_subject: sorted };
        let file = Bytes::from(encode_readings(&rows, layout).unwrap());
        let lake = LakeFile::open(file, Metric::Glucose).unwrap();
        prop_assert_eq!(lake.rows(), rows.len() as u64);
        prop_assert_eq!(lake.row_groups(), rows.len().div_ceil(group).max(usize::from(rows.is_empty())));
        let back = lake.all_rows().unwrap();
        prop_assert_eq!(back.len(), rows.len());
        for (a, b) in back.iter().zip(&rows) {
            // -0.0 == 0.0, so compare bits: the value must come back exactly.
            prop_assert_eq!(a.value.to_bits(), b.value.to_bits());
            prop_assert_eq!(a, b);
        }
    }
}

#[test]
fn a_file_of_no_rows_has_one_empty_row_group() {
    let file = Bytes::from(encode_readings(&[], FileLayout::default()).unwrap());
    let lake = LakeFile::open(file, Metric::Glucose).unwrap();
    assert_eq!((lake.rows(), lake.row_groups()), (0, 1));
}
