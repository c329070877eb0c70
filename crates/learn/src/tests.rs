//! The learner's unit tests: determinism, fold-in against training, structure learnt, dislikes.

use super::*;

/// Users 0..20 like items 0..10, users 20..40 items 10..20: each user has interacted with
/// about four in five items of their group, a different selection for each user.
fn two_groups() -> Vec<Observation> {
    let mut observations = Vec::new();
    for user in 0..40u32 {
        let group = user / 20;
        for item in (group * 10)..(group * 10 + 10) {
            if seen(user as usize, item as usize) {
                observations.push(Observation {
                    user,
                    item,
                    weight: 1.0 + f32::from(u8::try_from(item % 3).unwrap()),
                });
            }
        }
    }
    observations
}

/// Whether `user` interacted with `item` of their group.
fn seen(user: usize, item: usize) -> bool {
    !(user * 7 + item * 3).is_multiple_of(5)
}

/// Parameters for the small, dense test data: a low weight on unobserved pairs, since each
/// user has seen four in five items of their group (real logs are sparse).
fn params(threads: usize) -> Params {
    Params {
        algorithm: Algorithm::Ials,
        factors: 8,
        iterations: 15,
        regularization: 0.01,
        unobserved_weight: 0.1,
        threads,
        ..Params::default()
    }
}

fn score(model: &Model, user: &[f32], item: usize) -> f32 {
    model
        .item(item)
        .unwrap()
        .iter()
        .zip(user)
        .map(|(a, b)| a * b)
        .sum()
}

#[test]
fn training_is_deterministic_for_a_seed_whatever_the_threads() {
    let data = two_groups();
    let one = train(40, 20, &data, &params(1), |_| {}).unwrap();
    let again = train(40, 20, &data, &params(1), |_| {}).unwrap();
    let three = train(40, 20, &data, &params(3), |_| {}).unwrap();
    assert_eq!(one, again);
    assert_eq!(one.users, three.users);
    assert_eq!(one.items, three.items);
    let other_seed = Params {
        seed: 7,
        ..params(1)
    };
    assert_ne!(
        one.items,
        train(40, 20, &data, &other_seed, |_| {}).unwrap().items
    );
}

#[test]
fn a_fold_in_equals_the_trained_user_factors() {
    let data = two_groups();
    let model = train(40, 20, &data, &params(2), |_| {}).unwrap();
    for user in [0usize, 7, 21, 39] {
        let history: Vec<(u32, f32)> = data
            .iter()
            .filter(|o| o.user as usize == user)
            .map(|o| (o.item, o.weight))
            .collect();
        let folded = model.fold_in(&history);
        let trained = model.user(user).unwrap();
        for (a, b) in folded.iter().zip(trained) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "user {user}: {a} against {b}"
            );
        }
    }
}

#[test]
fn a_model_rebuilt_from_its_item_factors_folds_users_in_alike() {
    let data = two_groups();
    let model = train(40, 20, &data, &params(2), |_| {}).unwrap();
    let rebuilt = Model::from_item_factors(*model.params(), model.item_factors().to_vec()).unwrap();
    assert_eq!(rebuilt.item_count(), 20);
    assert_eq!(rebuilt.user_count(), 0, "it knows no trained users");
    let history = [(1u32, 1.0f32), (4, 2.0), (12, -1.0)];
    assert_eq!(rebuilt.fold_in(&history), model.fold_in(&history));
    let ragged = model.item_factors()[1..].to_vec();
    assert!(Model::from_item_factors(*model.params(), ragged).is_err());
    let mut poisoned = model.item_factors().to_vec();
    poisoned[3] = f32::NAN;
    assert!(Model::from_item_factors(*model.params(), poisoned).is_err());
}

#[test]
fn users_are_steered_to_the_unseen_items_of_their_group() {
    let data = two_groups();
    let model = train(40, 20, &data, &params(2), |_| {}).unwrap();
    for user in 0..40usize {
        let factors = model.user(user).unwrap();
        let group = user / 20;
        let unseen = |item: usize| item / 10 != group || !seen(user, item);
        let best = (0..20)
            .filter(|&i| unseen(i))
            .max_by(|&a, &b| score(&model, factors, a).total_cmp(&score(&model, factors, b)))
            .unwrap();
        assert_eq!(best / 10, group, "user {user} was steered to item {best}");
    }
    // A user the model never saw, folded in from one item, is steered to that item's group.
    let newcomer = model.fold_in(&[(12, 4.0)]);
    let best = (0..20)
        .filter(|&i| i != 12)
        .max_by(|&a, &b| score(&model, &newcomer, a).total_cmp(&score(&model, &newcomer, b)))
        .unwrap();
    assert_eq!(best / 10, 1, "steered to {best}");
}

#[test]
fn a_dislike_is_a_confident_zero_and_repeats_add_up() {
    let data = two_groups();
    let model = train(40, 20, &data, &params(1), |_| {}).unwrap();
    let liked = model.fold_in(&[(2, 1.0), (4, 1.0)]);
    let disliking = model.fold_in(&[(2, 1.0), (4, 1.0), (6, -8.0)]);
    assert!(score(&model, &liked, 6) > 0.0);
    assert!(
        score(&model, &disliking, 6) < score(&model, &liked, 6),
        "{} against {}",
        score(&model, &disliking, 6),
        score(&model, &liked, 6)
    );
    // The same item given twice counts as its summed weight.
    assert_eq!(
        model.fold_in(&[(2, 1.0), (2, 3.0)]),
        model.fold_in(&[(2, 4.0)])
    );
    // Items the model does not know, and empty histories, give zeros.
    assert_eq!(model.fold_in(&[(99, 1.0)]), vec![0.0; 8]);
}

#[test]
fn bad_input_is_refused() {
    let p = params(1);
    let bad = [Observation {
        user: 3,
        item: 0,
        weight: 1.0,
    }];
    assert!(matches!(
        train(3, 1, &bad, &p, |_| {}),
        Err(LearnError::OutOfRange { index: 0, .. })
    ));
    let nan = [Observation {
        user: 0,
        item: 0,
        weight: f32::NAN,
    }];
    assert_eq!(train(1, 1, &nan, &p, |_| {}), Err(LearnError::NotFinite(0)));
    let zero = Params { factors: 0, ..p };
    assert!(matches!(
        train(1, 1, &[], &zero, |_| {}),
        Err(LearnError::InvalidParams(_))
    ));
    let mut iterations = Vec::new();
    train(1, 1, &[], &p, |done| iterations.push(done)).unwrap();
    assert_eq!(iterations, (1..=15).collect::<Vec<_>>());
}

#[test]
fn ease_learns_the_groups_in_closed_form_and_serves_a_history_as_is() {
    let data = two_groups();
    let ease = Params {
        algorithm: Algorithm::Ease,
        ..Params::default()
    };
    let model = train(40, 20, &data, &ease, |_| {}).unwrap();
    assert_eq!(
        (model.factors(), model.item_count(), model.user_count()),
        (20, 20, 0)
    );
    assert_eq!(model.params().algorithm, Algorithm::Ease);
    // Auto takes EASE for a catalogue this small, and iALS when told.
    let auto = train(40, 20, &data, &Params::default(), |_| {}).unwrap();
    assert_eq!(auto, model, "auto is EASE here, and deterministic");
    // A user's vector is their history; their best unseen items are their group's.
    for user in [0usize, 27] {
        let history: Vec<(u32, f32)> = data
            .iter()
            .filter(|o| o.user as usize == user)
            .map(|o| (o.item, o.weight))
            .collect();
        let x = model.fold_in(&history);
        assert_eq!(x.len(), 20);
        let group = user / 20;
        let best = (0..20)
            .filter(|&i| !seen(user, i) || i / 10 != group)
            .max_by(|&a, &b| score(&model, &x, a).total_cmp(&score(&model, &x, b)))
            .unwrap();
        assert_eq!(best / 10, group, "user {user}");
    }
    // An item does not recommend itself: B's diagonal is zero.
    assert!((0..20).all(|i| model.item(i).unwrap()[i] == 0.0));
    let rebuilt = Model::from_item_factors(*model.params(), model.item_factors().to_vec()).unwrap();
    assert_eq!(rebuilt.fold_in(&[(3, 1.0)]), model.fold_in(&[(3, 1.0)]));
    assert!(Model::from_item_factors(*model.params(), vec![0.0; 19]).is_err());
    let too_many = Params {
        algorithm: Algorithm::Ease,
        ..Params::default()
    };
    let wide = [Observation {
        user: 0,
        item: 0,
        weight: 1.0,
    }];
    assert!(train(1, EASE_MAX_ITEMS + 1, &wide, &too_many, |_| {}).is_err());
    // A kept EASE model of more than 1,024 items is a valid model; iALS factors are not.
    let kept = Params {
        algorithm: Algorithm::Ease,
        factors: 1_100,
        ..Params::default()
    };
    assert!(kept.check().is_ok());
    let wide_ials = Params {
        algorithm: Algorithm::Ials,
        ..kept
    };
    assert!(wide_ials.check().is_err());
    let no_ridge = Params {
        ease_regularization: 0.0,
        ..Params::default()
    };
    assert!(no_ridge.check().is_err());
}
