//! A DenseNet-shaped block: each Concat joins the block's input as it is
//! (a branch with no layer) with new maps, a batch norm with ReLU on its
//! own reads the first Concat, and the second Concat joins the first, so a
//! layer reads three layers at once. Held to the plain-loop f64 reference
//! (forward, the four modes, the identity) and central differences.

mod common;

use common::reference::Reference;
use common::{Probed, assert_forward_is_the_references, folded};
use fovea_engine::fixtures::{
    ChainConv, DENSE_SIZE, DENSE_SOURCES, dense_batch_norm, dense_convs, dense_model, dense_weights,
};

fn setup() -> Probed {
    let mut weights = dense_weights();
    weights[2] = folded(vec![weights[2].clone()], vec![dense_batch_norm()]).remove(0);
    Probed::new(
        &dense_model(),
        DENSE_SIZE,
        "dense",
        Reference::of_chain(&dense_convs(), weights, DENSE_SIZE)
            .with_sources(&DENSE_SOURCES)
            .with_averaged_head(),
    )
}

#[test]
fn joined_inputs_are_read_as_the_layers_they_hold() {
    let s = setup();
    let net = &s.engine.network;
    assert_eq!(net.probe_stop, None);
    let sources: Vec<&[usize]> = net.convs.iter().map(|c| c.sources.as_slice()).collect();
    assert_eq!(sources, DENSE_SOURCES);
    let norm_only: Vec<bool> = net.convs.iter().map(|c| c.norm_only).collect();
    assert_eq!(norm_only, [false, false, true, false, false]);
    assert_eq!(net.dense.len(), 2);
    // Fields: 3, 5; the norm adds nothing; 7; the 1x1 layer's hull of its
    // sources (7).
    s.assert_read_as(
        &dense_convs(),
        &[(16, 16); 5],
        &[(3, 1), (5, 1), (5, 1), (7, 1), (7, 1)],
    );
    let trace = s.reference.forward(&s.input);
    assert_forward_is_the_references(&s.engine, &s.rec, &trace);
}

#[test]
fn all_modes_and_filters_match_the_reference_through_the_joins() {
    let s = setup();
    let head: [ChainConv; 1] = [dense_convs()[4]];
    s.assert_all_modes(&head, s.probe_neurons(), 7);
    s.assert_filters([3 * 3, 4 * 3], 1);
}
